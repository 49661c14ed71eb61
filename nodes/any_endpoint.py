"""fal Audio (any endpoint): call a fal audio model the pack has no node for yet.

The endpoint id and the arguments (JSON text) are widgets; up to two AUDIO inputs and one IMAGE
are uploaded and their URLs put in the fields the user names. Everything else is the curated
nodes' machinery: checks before paying, journal, reuse, resume, cancel, progress and cost.
"""

import json
import re

from . import widgets as w
from .base import FalAudioNode

FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
AUDIO_SOCKETS = ("audio_1", "audio_2")
# A ready example: 10 s of Stable Audio 2.5.
DEFAULT_ENDPOINT = "fal-ai/stable-audio-25/text-to-audio"
DEFAULT_ARGUMENTS = '{\n  "prompt": "Gentle rain on a tin roof, distant thunder",\n  "seconds_total": 10\n}'
IMAGE_SOCKET = "image"


class FalAnyEndpoint(FalAudioNode):
    DISPLAY_NAME = "fal Audio (any endpoint)"
    DESCRIPTION = ("Call any fal audio model by its endpoint id, with its arguments as JSON, for models the pack has "
                   "no node for yet. Outputs the first audio file of the response and the whole response as JSON.")
    RETURN_TYPES = ("AUDIO", "STRING")
    RETURN_NAMES = ("audio", "response_json")
    SENDS_SEED = False  # a seed the model takes goes in the arguments
    # The sockets; the fields that receive their uploaded URLs are widgets, set per run.
    AUDIO_INPUTS = {socket: "" for socket in AUDIO_SOCKETS}
    IMAGE_INPUTS = {IMAGE_SOCKET: ""}
    # Pack limit for clips sent to a model the pack does not know: up to 20 minutes (the decode limit).
    INPUT_SECONDS = (0.1, 1200.0)

    @classmethod
    def INPUT_TYPES(cls):
        def field(socket, default):
            return w.text(f"The request field that receives {socket}'s uploaded URL (when {socket} is "
                          "connected), e.g. audio_url, reference_audio_url, image_url.", default=default)

        return w.node_inputs({
            "endpoint": w.text("fal's endpoint id, owner/app[/path], as on the model's page at https://fal.ai/models. "
                               "Only that shape: no URL, host or query, so the request can only go to fal.",
                               default=DEFAULT_ENDPOINT),
            "arguments": w.text("The model's input as a JSON object, field names as on the model's API page. "
                                "Checked to be a JSON object before anything is paid (an error names its line and "
                                "column). Never put your fal key here.", default=DEFAULT_ARGUMENTS, multiline=True),
        }, {
            "audio_1": w.audio("Optional audio, 0.1-1200 s (pack limit), uploaded (WAV) and sent as audio_1_field. "
                               "A batch makes one request per clip."),
            "audio_1_field": field("audio_1", "audio_url"),
            "audio_2": w.audio("Optional second audio, 0.1-1200 s (pack limit), uploaded (WAV) and sent as "
                               "audio_2_field."),
            "audio_2_field": field("audio_2", ""),
            IMAGE_SOCKET: ("IMAGE", {"tooltip": "Optional image (one, not a batch), uploaded as PNG and sent as "
                                                "image_field."}),
            "image_field": field("image", "image_url"),
        }, sent_seed=False)

    def gone_hint(self) -> str:
        return (f"Check the endpoint id for typos (copy it from the model's page, https://fal.ai/models/"
                f"{self.ENDPOINT}); a retired model's page names the one to use instead.")

    def requests(self, inputs):
        from ..core import secrets
        from ..core.json_text import parse_object
        from ..transport import credentials, endpoint_id

        inputs = dict(inputs)
        endpoint = endpoint_id.check(inputs.pop("endpoint", ""), self.DISPLAY_NAME, "endpoint")
        text = str(inputs.pop("arguments", ""))
        fields = {socket: str(inputs.pop(f"{socket}_field", "")).strip() for socket in (*AUDIO_SOCKETS, IMAGE_SOCKET)}
        arguments = parse_object(text, self.DISPLAY_NAME, "arguments")
        # The key is never sent as an argument (nor echoed back in the outputs, see outputs()).
        secrets.register(credentials.resolve_key(getattr(inputs.get("fal_client"), "profile", "")))
        # Checked on the parsed values: a key written with JSON escapes ("\\u0066...") is the key once parsed.
        self.check(not secrets.hidden_in(arguments), "arguments", "contains your fal key; the key is sent only in "
                   "the Authorization header, never as an argument. Remove it")
        connected = [s for s in (*AUDIO_SOCKETS, IMAGE_SOCKET) if inputs.get(s) is not None]
        for socket in connected:
            name = fields[socket]
            self.check(FIELD_NAME.fullmatch(name) is not None, f"{socket}_field",
                       f"is {name!r}; name the request field that receives {socket}'s URL (e.g. audio_url)")
            self.check(name not in arguments, f"{socket}_field", f"is {name!r}, which the arguments set too")
            others = [s for s in connected if s != socket and fields[s] == name]
            self.check(not others, f"{socket}_field", f"is {name!r}, the same field as {others[0]}_field"
                       if others else "")
        self.ENDPOINT = endpoint
        self.AUDIO_INPUTS = {s: fields[s] for s in AUDIO_SOCKETS}
        self.IMAGE_INPUTS = {IMAGE_SOCKET: fields[IMAGE_SOCKET]}
        self.arguments = arguments
        return super().requests(inputs)

    def prepare(self, request):
        return {**request, **self.arguments}

    def result_files(self, response):
        from ..jobs.results import MAIN, first_audio_file

        found = first_audio_file(response)
        if found is None:
            raise ValueError("the response holds no audio file (no File with an audio/* content type or an audio "
                             "file extension)")
        return {MAIN: found[1]}

    def outputs(self, results):
        from ..core import secrets

        responses = [r.response for r in results]
        text = json.dumps(responses[0] if len(responses) == 1 else responses, indent=2, ensure_ascii=False)
        return super().outputs(results) + (secrets.redact(text),)
