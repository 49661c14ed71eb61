"""Generated nodes: every endpoint of data/catalog.json without a hand-written node, as a node class built from
its spec on the FalAudioNode base (no Python file per node; no per-model code in the base or the job runner).

At import only data/catalog-index.json (class, endpoint, display name, task, outputs) is read; the catalog file
itself is parsed the first time a generated node is declared (INPUT_TYPES) or created.
"""

import json
import math
import re
from pathlib import Path

from . import widgets as w
from .base import FalAudioNode

CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "catalog.json"
INDEX_PATH = CATALOG_PATH.with_name("catalog-index.json")
NOT_SET = "(not set)"
UNSET_NOTE = " Not set: not sent, fal applies its own default."
# Pack limit for input clips of a generated node: the decode limit (20 minutes).
INPUT_SECONDS = (0.1, 1200.0)
# A number widget's range where fal states none.
INT_RANGE = (-(2 ** 31), 2 ** 31 - 1)
FLOAT_RANGE = (-1e9, 1e9)
RAW_FORMAT = re.compile(r"(pcm|ulaw|alaw)_\d+")
MEDIA_TYPES = {"audio": "AUDIO", "audio_list": "AUDIO", "image": "IMAGE", "image_list": "IMAGE", "video": "VIDEO",
               "video_list": "VIDEO"}

_catalog = None


def catalog() -> dict:
    """data/catalog.json's endpoints, parsed once."""
    global _catalog
    if _catalog is None:
        _catalog = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))["endpoints"]
    return _catalog


def _widget(item: dict) -> str:
    """The node's name of a catalog input: its socket, its widget name where fal's reads like a secret, or fal's."""
    return item.get("socket") or item.get("widget") or item["name"]


def _label(name: str) -> str:
    """How jobs.results.file_name labels a kept file of output `name`."""
    return "_" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:40]


class CatalogNode(FalAudioNode):
    """A node whose inputs, sockets, outputs and price come from its catalog spec (class attributes are filled in
    from it on first use)."""

    SPEC = None
    INPUT_SECONDS = INPUT_SECONDS

    def __init__(self):
        type(self)._load()

    @classmethod
    def _load(cls) -> dict:
        if cls.__dict__.get("SPEC") is not None:
            return cls.SPEC
        spec = catalog()[cls.ENDPOINT]
        items = spec["inputs"]
        cls.ITEMS = {_widget(i): i for i in items}
        cls.AUDIO_INPUTS = {i["socket"]: i["name"] for i in items if i["kind"] == "audio"}
        cls.IMAGE_INPUTS = {i["socket"]: i["name"] for i in items if i["kind"] == "image"}
        cls.OTHER_MEDIA = {i["socket"]: i for i in items if i["kind"] in ("audio_list", "image_list", "video",
                                                                         "video_list")}
        cls.REQUIRED_TEXT = tuple(_widget(i) for i in items if i["fal"].get("required") and
                                  i["kind"] in ("text", "multiline", "json", "url"))
        cls.UNSET = {_widget(i): NOT_SET for i in items if i.get("unset") and i["kind"] in
                     ("bool", "choice")}
        cls.SENDS_SEED = "seed" in spec
        cls.SEED_MAX = min(int(spec.get("seed", {}).get("maximum", w.SEED_MAX)), w.SEED_MAX)
        successor = spec.get("successor")
        if successor:
            name = (catalog().get(successor) or {}).get("name")
            cls.SUCCESSOR = f"{name} node ({successor})" if name else f"node for {successor}"
        cls.OUTPUTS = [o for o in spec["outputs"] if o["kind"] != "data"]
        cls.SPEC = spec
        return spec

    @classmethod
    def INPUT_TYPES(cls):
        cls._load()
        if cls.__dict__.get("_input_types") is None:
            required, optional = {}, {}
            for socket, item in cls.ITEMS.items():  # fal's optional fields are the node's optional inputs
                (required if item["fal"].get("required") else optional)[socket] = _declare(item)
            cls._input_types = w.node_inputs(required, optional, cls.SENDS_SEED, cls.SEED_MAX)
        return cls._input_types

    # -- from widget values to fal's fields ------------------------------------------------------

    def prepare(self, request: dict) -> dict:
        from ..core.schema import problem

        for widget in list(request):
            item = self.ITEMS.get(widget)
            if item is None:
                continue
            name, fal, value = item["name"], item["fal"], request.pop(widget)
            if item["kind"] == "json":
                value = _parse_json(value, self.DISPLAY_NAME, name)
            elif item["kind"] == "choice":
                value = next((o for o in fal["enum"] if str(o) == value), value)
            elif item["kind"] == "bool" and item.get("unset"):
                value = value == "true"
            elif item["kind"] in ("int", "float") and isinstance(value, str):
                value = self._number(name, value, item["kind"])
            elif item["kind"] == "url":
                value = value.strip()
                self.check(value.startswith(("https://", "http://", "data:")), name,
                           "must be a file URL (https://...), e.g. from another fal node's output")
            found = problem(value, {**fal, "required": True}, name)
            if found:
                self.check(False, found[0], found[1])
            request[name] = value
        return request

    def _number(self, name: str, text: str, kind: str):
        try:
            value = float(text.strip())
        except ValueError:
            value = None
        self.check(value is not None and value == value and abs(value) != float("inf"), name,
                   f"is {text!r}, not a number; type a number or leave it empty (not set)")
        if kind == "int":
            self.check(value.is_integer(), name, f"is {text!r}; it must be a whole number")
            return int(value)
        return value

    def billing(self, request: dict, clips: dict) -> dict:
        counted = self.SPEC["price"].get("counted", {})
        by = counted.get("by")
        seconds = characters = None
        if by == "seconds" and _number(request.get(counted["field"])) is not None:
            seconds = _number(request[counted["field"]]) * counted.get("scale", 1.0)
        elif by == "input" and counted.get("socket") in clips:
            from ..media.audio import duration

            seconds = duration(clips[counted["socket"]])
        elif by == "characters" and isinstance(request.get(counted.get("field")), str):
            characters = len(request[counted["field"]])
        return {"seconds": seconds, "characters": characters}

    def raw_layout(self, request: dict):
        fmt = request.get("output_format")
        if isinstance(fmt, str) and RAW_FORMAT.fullmatch(fmt):
            from .rules.elevenlabs import raw_layout

            return raw_layout(fmt)
        return None

    def decoder(self, request: dict):
        videos = [o["name"] for o in self.OUTPUTS if o["kind"] in ("video", "video_list")]
        audio = super().decoder(request)
        if not videos:
            return audio

        def decode(path):
            stem = Path(path).stem
            if any(stem.endswith(_label(v)) or re.search(re.escape(_label(v)) + r"-\d+$", stem) for v in videos):
                return {"video_file": str(path)}  # kept as it is: VIDEO outputs read the file
            return audio(path)

        return decode

    def requests(self, inputs: dict) -> list:
        inputs = dict(inputs)
        media = {socket: inputs.pop(socket, None) for socket in self.OTHER_MEDIA}
        for socket, item in self.OTHER_MEDIA.items():
            self.check(media[socket] is not None or not item["fal"].get("required"), socket,
                       f"is required: connect {'a VIDEO' if item['kind'].startswith('video') else 'an input'} here")
        planned = super().requests(inputs)
        uploads = {item["name"]: self._upload(socket, item, media[socket])
                   for socket, item in self.OTHER_MEDIA.items() if media[socket] is not None}
        for request, *_ in planned:
            request.update(uploads)
        return planned

    def _upload(self, socket: str, item: dict, value):
        from ..jobs.job import Upload

        kind = item["kind"]
        if kind == "audio_list":
            from ..media import audio as audio_io
            from ..media import reuse

            clips = reuse.carry(value, audio_io.clips(value, self.DISPLAY_NAME, socket))
            for index, clip in enumerate(clips):
                self._check_clip_length(socket, clip, index, len(clips))
            return [Upload.from_clip(clip, f"{socket}_{index + 1}.wav") for index, clip in enumerate(clips)]
        if kind == "image_list":
            from ..media.png import image_png

            self.check(hasattr(value, "shape") and len(value.shape) == 4, socket, "is not an IMAGE batch")
            return [Upload(image_png(value[i:i + 1], self.DISPLAY_NAME, socket), "image/png", f"{socket}_{i + 1}.png")
                    for i in range(value.shape[0])]
        from ..media.video import video_file

        data, content_type, extension = video_file(value, self.DISPLAY_NAME, socket)
        upload = Upload(data, content_type, f"{socket}.{extension}")
        return [upload] if kind == "video_list" else upload

    # -- from fal's response to the node's outputs -----------------------------------------------

    def result_files(self, response: dict) -> dict:
        from ..jobs.results import file_url

        files = {}
        for out in self.OUTPUTS:
            name, value = out["name"], response.get(out["name"]) if isinstance(response, dict) else None
            if out["kind"] in ("audio", "video"):
                if value is None and not out["fal"].get("required"):
                    continue
                files[name] = file_url(response, name)
            elif out["kind"] in ("audio_list", "video_list"):
                if not isinstance(value, list) or not value:
                    if out["fal"].get("required"):
                        raise ValueError(f"the response has no '{name}' files")
                    continue
                for index, item in enumerate(value):
                    files[f"{name}-{index}"] = file_url({"file": item}, "file")
        return files

    def outputs(self, results: list) -> tuple:
        from ..media import audio as audio_io
        from ..core import secrets

        values = []
        first = results[0].response if isinstance(results[0].response, dict) else {}
        for out in self.OUTPUTS:
            name, kind = out["name"], out["kind"]
            if kind in ("audio", "audio_list"):
                keys = (lambda key: key == name) if kind == "audio" else (lambda key: re.fullmatch(
                    re.escape(name) + r"-\d+", key) is not None)
                clips = [audio for r in results for key, audio in r.audios.items() if keys(key)]
                values.append(audio_io.stack(clips) if clips else None)
            elif kind in ("video", "video_list"):
                key = name if kind == "video" else f"{name}-0"
                path = next((r.files[key] for r in results if key in r.files), None)
                from ..media.video import video_from_file

                values.append(video_from_file(path) if path else None)
            elif kind == "srt":
                from ..media.subtitles import srt

                values.append(srt(cues(first.get(out["from"]))))
            elif kind == "url":
                item = first.get(name)
                values.append(item.get("url", "") if isinstance(item, dict) else str(item or ""))
            else:
                item = first.get(name)
                values.append(item if isinstance(item, str) else "" if item is None else json.dumps(item))
        responses = [r.response for r in results]
        text = json.dumps(responses[0] if len(responses) == 1 else responses, indent=2, ensure_ascii=False)
        return (*values, secrets.redact(text))


CUE_WORDS = 8  # subtitle cues of timed words: at most this many words,
CUE_PAUSE = 1.0  # a new cue after a pause this long (seconds), at a sentence's end or a new speaker


def cues(words) -> list:
    """Timed words ([{"text", "start", "end", "type"?, "speaker_id"?}]) grouped into subtitle chunks
    ({"timestamp": [start, end], "text"}) for media.subtitles.srt."""
    chunks, current, speaker = [], [], None
    for word in words if isinstance(words, list) else []:
        if not isinstance(word, dict) or word.get("type", "word") != "word" or not str(word.get("text", "")).strip():
            continue
        who = word.get("speaker_id")
        if current and (len(current) >= CUE_WORDS or who != speaker or
                        float(word.get("start") or 0) - float(current[-1].get("end") or 0) > CUE_PAUSE or
                        str(current[-1]["text"]).rstrip().endswith((".", "?", "!"))):
            chunks.append(current)
            current = []
        current.append(word)
        speaker = who
    if current:
        chunks.append(current)
    return [{"timestamp": [float(c[0].get("start") or 0), float(c[-1].get("end") or c[0].get("start") or 0)],
             "text": (f"{c[0]['speaker_id']}: " if c[0].get("speaker_id") else "")
             + " ".join(str(w["text"]).strip() for w in c)} for c in chunks]


def _number(value):
    """A number, or the number a not-set number widget holds as text (the price badge prices raw widgets)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _parse_json(text: str, node: str, field: str):
    from ..core.errors import invalid

    def constant(name):
        raise invalid(node, field, f"is not valid JSON: {name} is not a JSON value (fal takes none)")

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise invalid(node, field, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") \
            from None


def _example(schema: dict, depth: int = 0):
    """A value of `schema` for a tooltip (required properties only)."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _example(v, depth + 1) for k, v in props.items() if v.get("required")} if depth < 4 else {}
    if kind == "array":
        return [_example(schema.get("items") or {}, depth + 1)] if depth < 4 else []
    return {"string": "...", "file": "https://...", "integer": schema.get("minimum", 0),
            "number": schema.get("minimum", 0), "boolean": False}.get(kind)


def _declare(item: dict):
    """One catalog input -> its ComfyUI declaration."""
    fal, kind, tooltip = item["fal"], item["kind"], item["tooltip"]
    unset = item.get("unset")
    if kind in MEDIA_TYPES:
        batch = {"audio_list": " A batch: every clip of it is sent, as one list.",
                 "image_list": " A batch: every image of it is sent (PNG), as one list.",
                 "video_list": " Sent as a list of one video."}.get(kind, "")
        sent = " Saved to a file and uploaded." if kind.startswith("video") else ""
        length = (f" Clips of {INPUT_SECONDS[0]:g}-{INPUT_SECONDS[1]:g} s (pack limit)."
                  if kind.startswith("audio") else "")
        return (MEDIA_TYPES[kind], {"tooltip": f"{tooltip}{batch}{sent}{length} (fal field: {item['name']})"})
    if kind in ("text", "multiline", "url"):
        default = fal.get("default") if isinstance(fal.get("default"), str) else ""
        extra = "" if fal.get("required") else " Empty: not sent."
        declared = w.text(tooltip + extra, default, multiline=kind == "multiline")
    elif kind == "json":
        default = fal.get("default")
        shown = json.dumps(default, indent=1) if default not in (None, [], {}, "") else ""
        example = json.dumps(_example(fal), ensure_ascii=False)
        declared = w.text(f"{tooltip} JSON, checked against fal's schema before anything is paid, e.g. {example}"
                          + ("" if fal.get("required") else " Empty: not sent."), shown, multiline=True)
    elif kind == "bool":
        if unset:
            declared = w.choice((NOT_SET, "true", "false"), NOT_SET, tooltip + UNSET_NOTE)
        else:
            declared = w.boolean(tooltip, bool(fal.get("default", False)))
    elif kind == "choice":
        options = [str(o) for o in fal["enum"]]
        if unset:
            declared = w.choice([NOT_SET, *options], NOT_SET, tooltip + UNSET_NOTE)
        else:
            default = str(fal["default"]) if str(fal.get("default")) in options else options[0]
            declared = w.choice(options, default, tooltip)
    elif unset:  # a number fal gives no default for: a text box, empty = not set
        span = _span(fal)
        declared = w.text(f"{tooltip} A {'whole ' if kind == 'int' else ''}number{span}; empty: not sent, fal "
                          "applies its own default.")
    else:
        low, high = INT_RANGE if kind == "int" else FLOAT_RANGE
        low, high = fal.get("minimum", low), fal.get("maximum", high)
        default = fal.get("default", low if "minimum" in fal else max(low, min(high, 0)))
        if kind == "int":
            declared = w.integer(tooltip, int(default), int(low), int(high))
        else:
            step = 0.01 if high - low <= 10 else 0.1
            declared = w.number(tooltip, float(default), float(low), float(high), step)
    if item.get("advanced"):
        declared[1]["advanced"] = True
    return declared


def _span(fal: dict) -> str:
    low, high = fal.get("minimum"), fal.get("maximum")
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    return f" of at least {low:g}" if low is not None else f" of at most {high:g}" if high is not None else ""


def node_classes() -> dict:
    """{class name: generated node class} from the index (no catalog parse)."""
    classes = {}
    for name, endpoint, display, task, types, names in json.loads(INDEX_PATH.read_text(encoding="utf-8")):
        classes[name] = type(name, (CatalogNode,), {
            "ENDPOINT": endpoint, "DISPLAY_NAME": display, "CATEGORY": f"audio/fal/{task}",
            "RETURN_TYPES": tuple(types), "RETURN_NAMES": tuple(names), "__module__": __name__,
            "DESCRIPTION": f"fal's {display[:-6]} ({endpoint}), a node generated from fal's schema: its widgets, "
                           "sockets and outputs follow the model's API; response_json holds fal's whole answer."})
    return classes


# Module attributes too: a class is found by its module and name (copy, pickle, a second import of this module).
NODE_CLASSES = node_classes()
globals().update(NODE_CLASSES)
