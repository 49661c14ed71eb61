"""What every fal model node shares: turn widget values into requests, run them, return AUDIO.

Model nodes are declared as data and rendered onto this base by nodes/spec.py: curated ones from data/nodes/*.json
(their rules in nodes/rules/), generated ones from data/catalog.json (nodes/catalog.py turns an entry into a spec). The class attributes below
are what a declaration sets; transport, journal, progress and cancel live in the packages below (transport/,
money/, jobs/, core/).
"""

import asyncio
import copy
import time
from typing import TYPE_CHECKING, Dict

from ..core import comfy
from . import widgets

if TYPE_CHECKING:
    from ..jobs.options import CallOptions

# Declaring the nodes compiles only what a declaration needs: every other module of the pack (audio,
# errors, options, ...; jobs.job and through it sqlite3, httpx, fal_client) is imported where it
# is used, on a node's first run. A first start (no .pyc) compiles every module it imports.

# Inputs that steer the node rather than being sent to the model.
CONTROL_INPUTS = ("seed", "takes", "fal_client", "unique_id")


class Planned(tuple):
    """One planned request: unpacks as (request, take_key, label); `.bill` holds its cost facts (billing()),
    `.clips` the input clips it sends (socket -> clip), handed to outputs() as JobResult.inputs."""

    def __new__(cls, request: dict, take_key, label: str, bill: dict = None, clips: dict = None):
        planned = super().__new__(cls, (request, take_key, label))
        planned.bill = bill or {}
        planned.clips = clips or {}
        return planned


class FalAudioNode:
    ENDPOINT = ""
    DISPLAY_NAME = ""
    DESCRIPTION = ""
    CATEGORY = "audio/fal"
    FUNCTION = "generate"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    # Not API_NODE: that flag marks Comfy's own partner nodes, billed in Comfy credits; newer frontends
    # then demand a Comfy sign-in to run. These nodes are billed to the user's own fal key.
    # Response field holding the generated file (what the default result_files() keeps).
    RESULT_FILE = "audio"
    # Does the model take `seed`? If not, the seed only selects a new take.
    SENDS_SEED = True
    # Text inputs that must not be empty.
    REQUIRED_TEXT = ()
    # Audio sockets: node input name -> request field that receives its uploaded URL.
    AUDIO_INPUTS: Dict[str, str] = {}
    # Image sockets: node input name -> request field that receives its uploaded URL (one image, as PNG).
    IMAGE_INPUTS: Dict[str, str] = {}
    # Widget values that mean "not set: let fal apply its own default" (not sent).
    UNSET: Dict[str, object] = {}
    # Widgets sent inside an object field of the request: widget name -> "object.field"
    # (e.g. MiniMax's "speed" -> "voice_setting.speed").
    NESTED: Dict[str, str] = {}
    # Combo widgets whose options are numbers (a combo holds text): sent as integers.
    NUMERIC_CHOICES = ()
    # Text widgets that, when not empty, replace another field's value: widget -> field
    # (e.g. a typed voice id over the stock voice list).
    OVERRIDES: Dict[str, str] = {}
    # Widget values sent as JSON null (e.g. a language of "auto" -> null: fal detects it).
    NULL: Dict[str, object] = {}
    # The largest seed the model takes.
    SEED_MAX = widgets.SEED_MAX
    # The node(s) to use instead, named when fal answers 404 to a submit (it no longer serves ENDPOINT).
    SUCCESSOR = ""
    # Input clip limits: (min_seconds, max_seconds) every clip of every audio socket must lie in (None: no
    # limit). Refused before any encode or upload, naming the socket and the limit.
    INPUT_SECONDS = None

    def billing(self, request: dict, clips: Dict[str, dict]) -> dict:
        """What one request is billed by, for the estimate before paying (money.pricing turns it into the price's
        units): {"seconds": float or None, "characters": int or None}. A spec's `price` says it (nodes/spec.py);
        None: unknown before the run."""
        return {"seconds": None, "characters": None}

    def prepare(self, request: dict) -> dict:
        """Widget values -> fal's fields where they differ (a unit, JSON text, a nested setting). Runs before
        validate(), before anything is paid; raise core.errors.invalid(...) for what cannot be sent."""
        return request

    def raw_layout(self, request: dict):
        """For a request whose result is headerless samples (e.g. raw PCM), their media.audio.RawLayout;
        None when the result file is a normal audio container."""
        return None

    def decoder(self, request: dict):
        """How each kept result file of this request is decoded (media.audio.decoder of raw_layout())."""
        from ..media import audio as audio_io

        return audio_io.decoder(self.raw_layout(request))

    def validate(self, request: dict, clips: Dict[str, dict]) -> None:
        """Model-specific checks before paying; raise core.errors.invalid(...)."""

    def result_files(self, response: dict) -> Dict[str, str]:
        """The files to keep from fal's response: output name -> file URL. The job runner downloads,
        keeps (journal, reuse, resume) and decodes every one into JobResult.audios[name]; the first
        is also JobResult.audio. {} for a text-only result. Raise ValueError if a required file is missing."""
        from ..jobs.results import MAIN, file_url

        return {MAIN: file_url(response, self.RESULT_FILE)}

    def outputs(self, results: list) -> tuple:
        """The node's sockets from its JobResults (.response, .audio, .audios, .inputs), one per request."""
        from ..media import audio as audio_io

        return (audio_io.stack([r.audio for r in results]),)

    def say(self, text: str) -> None:
        """A line on the node's progress text (e.g. from outputs())."""
        progress = getattr(self, "progress", None)
        if progress is not None:
            progress.text(text)

    def check(self, rule_holds: bool, field: str, rule: str) -> None:
        if not rule_holds:
            from ..core.errors import invalid

            raise invalid(self.DISPLAY_NAME, field, rule)

    def _base_request(self, inputs: dict) -> dict:
        request = {}
        for name, value in inputs.items():
            if name in CONTROL_INPUTS or name in self.AUDIO_INPUTS or name in self.IMAGE_INPUTS:
                continue
            if name in self.REQUIRED_TEXT:
                self.check(isinstance(value, str) and value.strip() != "", name, "is required and is empty")
            if isinstance(value, str) and value.strip() == "":
                continue  # empty optional text: the service applies its own default
            if name in self.UNSET and value == self.UNSET[name]:
                continue
            request[name] = None if name in self.NULL and value == self.NULL[name] else value
        self._check_choices(request)
        for name, field in self.OVERRIDES.items():
            if name in request:
                request[field] = request.pop(name).strip()
        for name in self.NUMERIC_CHOICES:
            if name in request:
                request[name] = int(request[name])
        for name, path in self.NESTED.items():
            if name in request:
                parent, child = path.split(".")
                request.setdefault(parent, {})[child] = request.pop(name)
        return self.shape(request)

    def shape(self, request: dict) -> dict:
        """Turn widget values into shapes a widget cannot hold (e.g. a list from a text); default: as is."""
        return request

    def _check_choices(self, request: dict) -> None:
        """A combo value the node does not offer (an API prompt can send anything) is refused before paying."""
        spec = self.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, (kind, *_) in spec.get(section, {}).items():
                if isinstance(kind, list) and name in request and request[name] not in kind and not (
                        name in self.NULL and request[name] is None):
                    shown = ", ".join(str(option) for option in kind[:12]) + (", ..." if len(kind) > 12 else "")
                    self.check(False, name, f"is {request[name]!r}, which is not one of {shown}")

    def requests(self, inputs: dict) -> list:
        """Every (request, take_key, label) this run pays for: clips of a batch x takes.

        `inputs` may carry the run's CallOptions as "fal_client" (for the per-run request cap)."""
        from ..core import validate
        from ..jobs.options import CallOptions
        from ..media import audio as audio_io
        from ..media.png import image_png

        options = inputs.get("fal_client") or CallOptions()
        validate.widgets(self.DISPLAY_NAME, self.INPUT_TYPES(), inputs)
        base = self.prepare(self._base_request(inputs))
        takes = int(inputs.get("takes", 1))
        seed = int(inputs.get("seed", 0))
        self.check(1 <= takes <= widgets.MAX_TAKES, "takes", f"must be 1-{widgets.MAX_TAKES}")
        self.check(0 <= seed and seed + takes - 1 <= self.SEED_MAX, "seed",
                   f"must be 0-{self.SEED_MAX} for this model (with {takes} takes, at most "
                   f"{self.SEED_MAX - takes + 1})")
        clip_lists = {}
        for socket, field in self.AUDIO_INPUTS.items():
            if inputs.get(socket) is not None:
                from ..media import reuse  # on first run: declaring nodes imports no more than it must

                # Each clip keeps the origin of its batch item: a fal result passed on unchanged goes by URL.
                clip_lists[socket] = reuse.carry(inputs[socket], audio_io.clips(inputs[socket], self.DISPLAY_NAME,
                                                                                socket))
        # A batch of input clips is processed clip by clip (one request each), on purpose.
        batch = max([len(c) for c in clip_lists.values()] or [1])
        for socket, clips in clip_lists.items():
            self.check(len(clips) in (1, batch), socket, f"has {len(clips)} clips but another audio input has {batch}")
        self._check_request_count(batch, takes, clip_lists, options.max_requests_per_run)
        for socket, clips in clip_lists.items():
            for index, clip in enumerate(clips):
                self._check_clip_length(socket, clip, index, len(clips))
        from ..jobs.job import Upload

        per_clip = [{s: c[index if len(c) > 1 else 0] for s, c in clip_lists.items()} for index in range(batch)]
        for clips in per_clip:
            self.validate(base, clips)  # every clip is checked before any is encoded
        images = {self.IMAGE_INPUTS[s]: Upload(image_png(inputs[s], self.DISPLAY_NAME, s), "image/png", f"{s}.png")
                  for s in self.IMAGE_INPUTS if inputs.get(s) is not None}
        planned = []
        for index, clips in enumerate(per_clip):
            # Encoded once per clip, shared by its takes.
            uploads = {**images}
            uploads.update({self.AUDIO_INPUTS[s]: Upload.from_clip(clip, f"{s}.wav") for s, clip in clips.items()})
            for take in range(takes):
                request = {**base, **uploads}
                if self.SENDS_SEED:
                    request["seed"] = seed + take
                parts = ([f"clip {index + 1}/{batch}"] if batch > 1 else []) + (
                    [f"take {take + 1}/{takes}"] if takes > 1 else [])
                label = (", ".join(parts) + ": ") if parts else ""
                planned.append(Planned(request, None if self.SENDS_SEED else seed + take, label,
                                       self.billing(request, clips), clips))
        return planned

    def _check_request_count(self, batch: int, takes: int, clip_lists: dict, limit: int) -> None:
        count = batch * takes
        if count <= limit:
            return
        socket = next((s for s, c in clip_lists.items() if len(c) == batch), None) if batch > 1 else None
        how = (f"has {batch} clips x {takes} take{'s' if takes > 1 else ''}" if socket else f"is {takes}")
        from ..core.errors import invalid

        raise invalid(self.DISPLAY_NAME, socket or "takes",
                      f"{how}: this run would make {count} paid requests, more than the {limit} a run may make. "
                      "Raise 'max_requests_per_run' on a connected fal Client node to allow it")

    def _check_clip_length(self, socket: str, clip: dict, index: int, count: int) -> None:
        if self.INPUT_SECONDS is None:
            return
        from ..core.errors import invalid
        from ..media.audio import duration

        low, high = self.INPUT_SECONDS
        seconds = duration(clip)
        which = f" (clip {index + 1} of {count})" if count > 1 else ""
        span = (f"{low:g}-{high:g} s" if low is not None and high is not None
                else f"at least {low:g} s" if low is not None else f"at most {high:g} s")
        length = f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.1f} s"
        if low is not None and seconds < low:
            raise invalid(self.DISPLAY_NAME, socket, f"is {length} long{which}, too short: this model takes "
                                                     f"clips of {span}")
        if high is not None and seconds > high:
            raise invalid(self.DISPLAY_NAME, socket, f"is {length} long{which}, too long: this model takes clips "
                                                     f"of {span}; trim it first")

    def _plan(self, inputs: dict, options: "CallOptions") -> list:
        """The checked requests of this run, once the output folder is known to be usable."""
        from ..jobs.options import usable_output_folder

        planned = self.requests({**inputs, "fal_client": options})
        usable_output_folder(options, self.DISPLAY_NAME)
        return planned

    def gone_hint(self) -> str:
        """What to do when fal answers 404 to the submit (it does not serve ENDPOINT): "" to say nothing more."""
        return f"Use the {self.SUCCESSOR} instead." if self.SUCCESSOR else ""

    async def generate(self, fal_client: "CallOptions" = None, unique_id=None, **inputs):
        # Each run works on a copy of the node: ComfyUI runs the items of a list input concurrently on one
        # instance, and a run keeps on the node what it planned (e.g. the any-endpoint node's endpoint) and
        # its progress.
        from ..core.log import own_requests

        with own_requests():  # httpx does not log the run's requests (core/log.py)
            return await copy.copy(self)._generate(fal_client, unique_id, **inputs)

    async def _generate(self, fal_client: "CallOptions" = None, unique_id=None, **inputs):
        from ..core.errors import EndpointGone
        from ..jobs.job import Job
        from ..jobs.options import CallOptions

        options = fal_client or CallOptions()

        # All validation happens here, before any request. Encoding input clips or frames runs off
        # the event loop so other nodes of the prompt keep going meanwhile; plain widget values are
        # checked at once (a worker-thread hop would cost more than the check).
        if any(_holds_media(value) for value in inputs.values()):
            planned = await asyncio.to_thread(self._plan, inputs, options)
        else:
            planned = self._plan(inputs, options)
        self.progress = progress = comfy.Progress(unique_id)  # say() writes to it, e.g. from outputs()
        jobs = [Job(self.ENDPOINT, request, options, progress, self.result_files, take_key, label,
                    decode=self.decoder(request))
                for request, take_key, label in planned]
        from ..jobs import spend

        # The estimate is shown, and checked against the daily limit, before anything is uploaded or sent.
        await spend.estimate(jobs, [getattr(p, "bill", None) for p in planned], options, progress)
        started = time.monotonic()
        try:
            results = await run_all(jobs)
        except BaseException as exc:
            progress.text(spend.stopped(jobs, exc, started))
            if not isinstance(exc, EndpointGone) or not self.gone_hint():
                raise
            raise EndpointGone(f"{self.DISPLAY_NAME}: {exc} {self.gone_hint()}") from None
        progress.text(spend.done(jobs, results, started))
        # Per run, not on the node: ComfyUI runs the list items of one node concurrently on one instance.
        for result, plan in zip(results, planned):
            result.inputs = plan.clips
        return self.outputs(results)


def duration(clip: dict) -> float:
    """Seconds of an AUDIO clip, for node files: media.audio (the codec) is imported on first use."""
    from ..media.audio import duration as seconds

    return seconds(clip)


def _holds_media(value) -> bool:
    """An input that planning encodes: an AUDIO (or a list of them), an IMAGE or other tensor, a VIDEO."""
    if isinstance(value, (list, tuple)):
        return any(_holds_media(item) for item in value)
    return (isinstance(value, dict) and "waveform" in value) or hasattr(value, "shape") or hasattr(value, "save_to")


async def run_all(jobs: list) -> list:
    """Run jobs concurrently. Cancel stops them all; another failure lets the rest finish
    (what they return is paid for and kept) and then raises the first error."""
    if len(jobs) == 1:
        return [await jobs[0].run()]
    tasks = [asyncio.ensure_future(job.run()) for job in jobs]
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            if any(_interrupted(t) for t in done):
                break
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if errors:
        raise next((e for e in errors if comfy.is_interrupt(e)), errors[0])
    return [t.result() for t in tasks]


def _interrupted(task: asyncio.Task) -> bool:
    return not task.cancelled() and task.exception() is not None and comfy.is_interrupt(task.exception())
