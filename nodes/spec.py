"""Curated model nodes, declared as data: data/nodes/<family>.json, rendered here into node classes.

A spec (one per class name) holds what a node is: its endpoint, display name, task (the category), description,
its inputs in order, its outputs, whether the model takes a seed, how its price is counted and the clip lengths it
takes. The generated nodes (nodes/catalog.py) are specs too: a catalog entry is turned into one (catalog.spec_of) and
rendered here, so one mechanism declares, checks, sends and reads every model node. An input item:

    name        the node's input name (also fal's field, unless `field` or `replaces` says otherwise)
    kind        text | multiline | int | float | bool | choice | json (JSON text, parsed before sending) |
                url (a file URL typed as text) | audio | image | video (sockets) | audio_list | image_list |
                video_list (a batch socket, sent as one list of files)
    tooltip     shown on hover and on the help page
    default, min, max, step, options     the widget (min/max: the range a value must lie in to be sent)
    optional    an optional input (a socket that may stay unconnected, a text that may stay empty)
    required    text that must not be empty (a socket not `optional` must be connected)
    unset       the widget value meaning "not set": not sent, fal applies its own default (may lie outside min/max;
                e.g. a "(not set)" option of a choice)
    null        the widget value sent as JSON null (e.g. a language "auto": fal detects it)
    field       the request field it fills: an upload's URL field, another name for fal's field, or
                "object.field" for a nested setting
    replaces    a text that, when not empty, is sent as that other field instead of it (a typed voice id)
    number      a choice whose options are numbers, sent as integers
    max_length  the most characters a text may have
    schema      fal's schema of the field (core/schema.py): the value is sent in fal's type (a choice as its enum
                member or boolean, a text box as the number it holds) and checked against it before paying
    advanced    shown under the node's advanced inputs (frontends that support it)
    via         "hook": the node's hook reads it and sends it in another shape (or not at all)

An output item: `name`, `type` (AUDIO, VIDEO, STRING, INT) and where its value comes from. An AUDIO without `from`
is the kept result file (`result_file`); with `from` it is the file in that response field (`list`: a list of files,
one batch; `optional`: fal may leave it out), a VIDEO likewise. Any other output reads its `from` field of the first
take's response, "as": "json" (JSON text), "url" (a file's URL), "srt" (timed words as SRT subtitles); "as":
"response" is fal's whole response (several takes: a list).

`price`: {"seconds": a request field or a fixed number (`scale`: its unit in seconds, e.g. 0.001 for ms),
"characters": a text field, "input": true (the input clips' length) or a socket's name (that clip's length)};
`input_seconds`: [min, max] every input clip must lie in; `video_seconds`, `video_megabytes`: the length and size a
VIDEO input must keep to (hook video.VideoLimits); `result_file`: the response field of the file to keep
(default "audio"); `successor`: the node named when fal no longer serves the endpoint; `hook`: the class in
nodes/rules/ holding the model's real rules (checks across fields, response shapes), "<module>.<Class>".

The same spec renders INPUT_TYPES, the checks before paying (ranges, options, lengths, required inputs, fal's
schema), the help page's input list (scripts/catalog.py) and the contract tests (tests/nodes/test_specs.py).
"""

import importlib
import json
import math
import numbers
import re
from pathlib import Path

from . import widgets as w
from .base import FalAudioNode

NODES_DIR = Path(__file__).resolve().parent.parent / "data" / "nodes"
MEDIA = {"audio": "AUDIO", "image": "IMAGE", "video": "VIDEO", "audio_list": "AUDIO", "image_list": "IMAGE",
         "video_list": "VIDEO"}
# Sockets uploaded here, each as its file or as a list of files (a single audio or image: by the base node).
UPLOADED = ("video", "audio_list", "image_list", "video_list")
TEXT = ("text", "multiline")
TYPED = TEXT + ("json", "url")  # typed as text
RAW_FORMAT = re.compile(r"(pcm|ulaw|alaw)_\d+")


def widget_range(item: dict) -> tuple:
    """The widget's (min, max): the values that may be sent, widened to take the "not set" value."""
    low, high = item["min"], item["max"]
    unset = item.get("unset")
    if isinstance(unset, numbers.Real):
        low, high = min(low, unset), max(high, unset)
    return low, high


def declare(item: dict) -> tuple:
    """One input item -> its ComfyUI declaration."""
    kind, tooltip = item["kind"], item.get("tooltip", "")
    if kind in MEDIA:
        declared = (MEDIA[kind], {"tooltip": tooltip})
    elif kind in TYPED:
        declared = w.text(tooltip, item.get("default", ""), multiline=kind in ("multiline", "json"))
    elif kind == "int":
        declared = w.integer(tooltip, item["default"], *widget_range(item), item.get("step", 1))
    elif kind == "float":
        declared = w.number(tooltip, item["default"], *widget_range(item), item.get("step", 0.1))
    elif kind == "bool":
        declared = w.boolean(tooltip, item.get("default", False))
    elif kind == "choice":
        declared = w.choice(item["options"], item.get("default", item["options"][0]), tooltip)
    else:
        raise ValueError(f"unknown input kind {kind!r} of {item['name']!r}")
    if item.get("advanced"):
        declared[1]["advanced"] = True
    return declared


def _label(name: str) -> str:
    """How jobs.results.file_name labels a kept file of output `name`."""
    return "_" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:40]


class SpecNode(FalAudioNode):
    """A model node rendered from its spec (class attributes are set from it by node_class())."""

    SPEC: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        if cls.__dict__.get("_declared") is None:
            items = cls.SPEC["inputs"]
            cls._declared = w.node_inputs({i["name"]: declare(i) for i in items if not i.get("optional")},
                                          {i["name"]: declare(i) for i in items if i.get("optional")},
                                          cls.SENDS_SEED, cls.SEED_MAX)
        return cls._declared

    def item(self, name: str) -> dict:
        return next(i for i in self.SPEC["inputs"] if i["name"] == name)

    # -- from widget values to fal's fields ------------------------------------------------------

    def requests(self, inputs: dict) -> list:
        for item in self.SPEC["inputs"]:
            self._check_declared(item, inputs.get(item["name"]))
        inputs = dict(inputs)
        uploaded = [i for i in self.SPEC["inputs"] if i["kind"] in UPLOADED and "field" in i]
        media = {i["name"]: inputs.pop(i["name"], None) for i in uploaded}
        planned = super().requests(inputs)
        uploads = {i["field"]: self._upload(i, media[i["name"]]) for i in uploaded if media[i["name"]] is not None}
        for request, *_ in planned:
            request.update(uploads)
        return planned

    def _check_declared(self, item: dict, value) -> None:
        """What the spec says of one input, checked before anything is encoded, uploaded or paid. ComfyUI checks a
        widget's range only for a typed value, not for one that arrives over a link or in an API prompt."""
        name, kind = item["name"], item["kind"]
        if kind in MEDIA:
            self.check(value is not None or item.get("optional"), name,
                       f"is required (connect {'an' if MEDIA[kind] in ('AUDIO', 'IMAGE') else 'a'} {MEDIA[kind]})")
            return
        if value is None or ("unset" in item and value == item["unset"]):
            return
        if kind in ("int", "float"):
            from ..core.validate import finite

            low, high = item["min"], item["max"]
            finite(self.DISPLAY_NAME, name, value, *widget_range(item))
            if kind == "int":
                self.check(float(value).is_integer(), name, f"is {value!r}; it must be a whole number")
            unset = f" (or {item['unset']:g}: not set)" if isinstance(item.get("unset"), numbers.Real) else ""
            self.check(low <= value <= high, name, f"is {value:g}; it must be {low:g}-{high:g}{unset}")
        elif kind in TEXT and isinstance(value, str) and "max_length" in item:
            self.check(len(value) <= item["max_length"], name,
                       f"has {len(value)} characters; {self.DISPLAY_NAME.replace(' (fal)', '')} takes at most "
                       f"{item['max_length']}")

    def _base_request(self, inputs: dict) -> dict:
        return self._typed(super()._base_request(inputs))

    def _typed(self, request: dict) -> dict:
        """Widget values in fal's types, under fal's names, checked against fal's schema where the spec holds it:
        JSON text parsed, a URL checked, a choice as fal's enum member (or boolean), a number typed in a text box."""
        from ..core.schema import problem

        for item in self.SPEC["inputs"]:
            name, kind, schema = item["name"], item["kind"], item.get("schema")
            field = item.get("field", name)
            if name not in request or kind in MEDIA or "." in field:
                continue
            value = request.pop(name)
            if kind == "json":
                value = _parse_json(value, self.DISPLAY_NAME, field)
            elif kind == "url":
                value = value.strip()
                self.check(value.startswith(("https://", "http://", "data:")), field,
                           "must be a file URL (https://...), e.g. from another fal node's output")
            elif schema and kind == "choice" and isinstance(value, str):
                value = value == "true" if schema["type"] == "boolean" else next(
                    (o for o in schema.get("enum", ()) if str(o) == value), value)
            elif schema and kind in TEXT and schema["type"] in ("integer", "number"):
                value = self._number(field, value, schema["type"])
            if schema:
                found = problem(value, {**schema, "required": True}, field)
                if found:
                    self.check(False, found[0], found[1])
            request[field] = value
        return request

    def _number(self, name: str, text: str, kind: str):
        try:
            value = float(text.strip())
        except ValueError:
            value = None
        self.check(value is not None and math.isfinite(value), name,
                   f"is {text!r}, not a number; type a number or leave it empty (not set)")
        if kind == "integer":
            self.check(value.is_integer(), name, f"is {text!r}; it must be a whole number")
            return int(value)
        return value

    def _upload(self, item: dict, value):
        """A batch or video socket -> its upload(s) (a list of files for the *_list kinds)."""
        from ..jobs.job import Upload

        kind, socket = item["kind"], item["name"]
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

    def billing(self, request: dict, clips: dict) -> dict:
        """The price's facts from the spec: seconds of a field (or fixed), characters of a text field, or the
        length of the input clips (all, or one socket's). A number still typed as text (a price badge reads raw
        widgets) counts too."""
        price = self.SPEC.get("price", {})
        if price.get("input"):
            from ..media.audio import duration

            chosen = [c for socket, c in clips.items() if price["input"] in (True, socket)]
            return {"seconds": sum(duration(clip) for clip in chosen) or None, "characters": None}
        seconds = price.get("seconds")
        seconds = _number(request.get(seconds)) if isinstance(seconds, str) else seconds
        text = request.get(price["characters"]) if price.get("characters") else None
        return {"seconds": None if seconds is None else float(seconds) * price.get("scale", 1.0),
                "characters": len(text) if isinstance(text, str) else None}

    # -- from fal's response to the node's outputs -----------------------------------------------

    def raw_layout(self, request: dict):
        fmt = request.get("output_format")
        if isinstance(fmt, str) and RAW_FORMAT.fullmatch(fmt):
            from .rules.elevenlabs import raw_layout

            return raw_layout(fmt)
        return None

    def _files(self, *kinds: str) -> list:
        """The outputs of these types read as files from a response field."""
        return [o for o in self.SPEC["outputs"] if o["type"] in kinds and "from" in o]

    def decoder(self, request: dict):
        videos = [o["name"] for o in self._files("VIDEO")]
        audio = super().decoder(request)
        if not videos:
            return audio

        def decode(path):
            stem = Path(path).stem
            if any(stem.endswith(_label(v)) or re.search(re.escape(_label(v)) + r"-\d+$", stem) for v in videos):
                return {"video_file": str(path)}  # kept as it is: VIDEO outputs read the file
            return audio(path)

        return decode

    def result_files(self, response: dict) -> dict:
        if any(o["type"] == "AUDIO" and "from" not in o for o in self.SPEC["outputs"]):
            return super().result_files(response)  # the kept result file (result_file)
        from ..jobs.results import file_url

        files = {}
        for out in self._files("AUDIO", "VIDEO"):
            name, field = out["name"], out["from"]
            value = response.get(field) if isinstance(response, dict) else None
            if not out.get("list"):
                if value is None and out.get("optional"):
                    continue
                files[name] = file_url(response, field)
            elif not isinstance(value, list) or not value:
                if not out.get("optional"):
                    raise ValueError(f"the response has no '{field}' files")
            else:
                for index, item in enumerate(value):
                    files[f"{name}-{index}"] = file_url({"file": item}, "file")
        return files

    def outputs(self, results: list) -> tuple:
        """Each output as its item says: the kept audio, files from response fields (AUDIO, VIDEO), values of the
        first take's response ("" / 0 when fal leaves one out, never None), fal's whole response."""
        values = []
        first = results[0].response if isinstance(results[0].response, dict) else {}
        for out in self.SPEC["outputs"]:
            name, kind = out["name"], out["type"]
            if kind == "AUDIO" and "from" not in out:
                values.append(super().outputs(results)[0])
            elif kind == "AUDIO":
                from ..media import audio as audio_io

                clips = [audio for r in results for key, audio in r.audios.items()
                         if (re.fullmatch(re.escape(name) + r"-\d+", key) if out.get("list") else key == name)]
                values.append(audio_io.stack(clips) if clips else None)
            elif kind == "VIDEO":
                from ..media.video import video_from_file

                key = f"{name}-0" if out.get("list") else name
                path = next((r.files[key] for r in results if key in r.files), None)
                values.append(video_from_file(path) if path else None)
            elif out.get("as") == "response":
                from ..core import secrets

                responses = [r.response for r in results]
                values.append(secrets.redact(json.dumps(responses[0] if len(responses) == 1 else responses,
                                                        indent=2, ensure_ascii=False)))
            else:
                values.append(_value(out, first.get(out["from"])))
        return tuple(values)


def _value(out: dict, value):
    """One output read from a response field."""
    how = out.get("as")
    if out["type"] == "INT":
        return int(value or 0)
    if how == "json":
        return json.dumps(value or [], ensure_ascii=False)
    if how == "url":
        return value.get("url", "") if isinstance(value, dict) else str(value or "")
    if how == "srt":
        from ..media.subtitles import srt

        return srt(cues(value))
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


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


def attributes(spec: dict) -> dict:
    """A node class's attributes from its spec."""
    items = spec["inputs"]
    kinds = {i["name"]: i["kind"] for i in items}
    return {
        "SPEC": spec, "ENDPOINT": spec["endpoint"], "DISPLAY_NAME": spec["name"], "DESCRIPTION": spec["description"],
        "CATEGORY": f"audio/fal/{spec['task']}",
        "RETURN_TYPES": tuple(o["type"] for o in spec["outputs"]),
        "RETURN_NAMES": tuple(o["name"] for o in spec["outputs"]),
        "SENDS_SEED": "seed" in spec, "SEED_MAX": spec.get("seed", {}).get("maximum", w.SEED_MAX),
        "REQUIRED_TEXT": tuple(i["name"] for i in items if i.get("required") and i["kind"] in TYPED),
        "AUDIO_INPUTS": {i["name"]: i["field"] for i in items if i["kind"] == "audio" and "field" in i},
        "IMAGE_INPUTS": {i["name"]: i["field"] for i in items if i["kind"] == "image" and "field" in i},
        "UNSET": {i["name"]: i["unset"] for i in items if "unset" in i},
        "NULL": {i["name"]: i["null"] for i in items if "null" in i},
        "NESTED": {i["name"]: i["field"] for i in items if "." in i.get("field", "") and kinds[i["name"]] not in MEDIA},
        "OVERRIDES": {i["name"]: i["replaces"] for i in items if "replaces" in i},
        "NUMERIC_CHOICES": tuple(i["name"] for i in items if i.get("number")),
        "INPUT_SECONDS": tuple(spec["input_seconds"]) if "input_seconds" in spec else None,
        "RESULT_FILE": spec.get("result_file", "audio"), "SUCCESSOR": spec.get("successor", ""),
    }


def node_class(name: str, spec: dict) -> type:
    """The node class of one spec: its hook (nodes/rules/) first, then SpecNode."""
    bases = (SpecNode,)
    if spec.get("hook"):
        module, _, hook = spec["hook"].partition(".")
        bases = (getattr(importlib.import_module(f".rules.{module}", __package__), hook), SpecNode)
    return type(name, bases, {**attributes(spec), "__module__": __name__})


def specs() -> dict:
    """Every curated spec, by class name, in the order of data/nodes/*.json."""
    found = {}
    for path in sorted(NODES_DIR.glob("*.json")):
        found.update(json.loads(path.read_text(encoding="utf-8")))
    return found


NODE_CLASSES = {name: node_class(name, spec) for name, spec in specs().items()}
# Module attributes too: a class is found by its module and name (copy, pickle, a second import of this module).
globals().update(NODE_CLASSES)
