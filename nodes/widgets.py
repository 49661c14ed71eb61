"""Input declarations shared by every node: typed widgets with tooltips, the seed and
takes controls, and the optional fal Client socket."""

SEED_MAX = 2**31 - 1  # fal's models take a 32-bit signed seed
MAX_TAKES = 8
# The fal Client's default for max_requests_per_run: jobs.options.MAX_REQUESTS_PER_RUN, CallOptions' default
# (repeated here so that declaring the fal Client node imports nothing of jobs/; a test keeps them equal).
MAX_REQUESTS_PER_RUN = 16


def text(tooltip: str, default: str = "", multiline: bool = False):
    return ("STRING", {"default": default, "multiline": multiline, "tooltip": tooltip})


def number(tooltip: str, default: float, min: float, max: float, step: float = 0.1):
    return ("FLOAT", {"default": default, "min": min, "max": max, "step": step, "round": step / 10,
                      "tooltip": tooltip})


def integer(tooltip: str, default: int, min: int, max: int, step: int = 1):
    return ("INT", {"default": default, "min": min, "max": max, "step": step, "tooltip": tooltip})


def choice(options, default: str, tooltip: str):
    return (list(options), {"default": default, "tooltip": tooltip})


def boolean(tooltip: str, default: bool = False):
    return ("BOOLEAN", {"default": default, "tooltip": tooltip})


def audio(tooltip: str):
    return ("AUDIO", {"tooltip": tooltip})


def seed(sent_to_api: bool, maximum: int = SEED_MAX):
    what = ("Sent to the model as its seed" if sent_to_api
            else "This model takes no seed; a different value asks for a new take")
    # "fixed" after generate: re-queueing an unchanged workflow must never pay twice.
    return ("INT", {"default": 0, "min": 0, "max": maximum, "control_after_generate": "fixed",
                    "tooltip": f"{what}. Same inputs and seed reuse the kept result at no cost; "
                               "change it (or set 'control after generate' to randomize) for a fresh take."})


TAKES = ("INT", {"default": 1, "min": 1, "max": MAX_TAKES,
                 "tooltip": "How many takes to generate at once (seeds seed, seed+1, ...), returned as one "
                            "AUDIO batch. Each take is a separate paid request."})

FAL_CLIENT = ("FAL_CLIENT", {"tooltip": "Call options from a fal Client node (credentials profile, timeouts, "
                                        "where results are kept). Unconnected: FAL_KEY and the defaults."})


def node_inputs(required: dict, optional: dict = None, sent_seed: bool = True, seed_max: int = SEED_MAX) -> dict:
    """The full INPUT_TYPES dict: the model's inputs, then seed/takes, the client socket, the node id."""
    return {
        "required": {**required, "seed": seed(sent_seed, seed_max), "takes": TAKES},
        "optional": {**(optional or {}), "fal_client": FAL_CLIENT},
        "hidden": {"unique_id": "UNIQUE_ID"},
    }
