"""Curated model nodes, declared as data: data/nodes/<family>.json, rendered here into node classes.

A spec (one per class name) holds what a node is: its endpoint, display name, task (the category), description,
its inputs in order, its outputs, whether the model takes a seed, how its price is counted and the clip lengths it
takes. An input item:

    name        the node's input name (also fal's field, unless `field` or `replaces` says otherwise)
    kind        text | multiline | int | float | bool | choice | audio | image | video
    tooltip     shown on hover and on the help page
    default, min, max, step, options     the widget (min/max: the range a value must lie in to be sent)
    optional    an optional input (a socket that may stay unconnected, a text that may stay empty)
    required    text that must not be empty (a socket not `optional` must be connected)
    unset       the widget value meaning "not set": not sent, fal applies its own default (may lie outside min/max)
    null        the widget value sent as JSON null (e.g. a language "auto": fal detects it)
    field       the request field it fills: an upload's URL field, or "object.field" for a nested setting
    replaces    a text that, when not empty, is sent as that other field instead of it (a typed voice id)
    number      a choice whose options are numbers, sent as integers
    max_length  the most characters a text may have
    advanced    shown under the node's advanced inputs (frontends that support it)
    via         "hook": the node's hook reads it and sends it in another shape (or not at all)

`price`: {"seconds": a request field or a fixed number, "characters": a text field, "input": true (the input clips'
length)}; `input_seconds`: [min, max] every input clip must lie in; `result_file`: the response field of the file
to keep (default "audio"); `successor`: the node named when fal no longer serves the endpoint; `hook`: the class in
nodes/rules/ holding the model's real rules (checks across fields, response shapes), "<module>.<Class>".

The same spec renders INPUT_TYPES, the checks before paying (ranges, options, lengths, required inputs), the help
page's input list (scripts/catalog.py) and the contract tests (tests/nodes/test_specs.py).
"""

import importlib
import json
import numbers
from pathlib import Path

from . import widgets as w
from .base import FalAudioNode

NODES_DIR = Path(__file__).resolve().parent.parent / "data" / "nodes"
MEDIA = {"audio": "AUDIO", "image": "IMAGE", "video": "VIDEO"}
TEXT = ("text", "multiline")


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
    elif kind in TEXT:
        declared = w.text(tooltip, item.get("default", ""), multiline=kind == "multiline")
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

    def requests(self, inputs: dict) -> list:
        for item in self.SPEC["inputs"]:
            self._check_declared(item, inputs.get(item["name"]))
        return super().requests(inputs)

    def _check_declared(self, item: dict, value) -> None:
        """What the spec says of one input, checked before anything is encoded, uploaded or paid. ComfyUI checks a
        widget's range only for a typed value, not for one that arrives over a link or in an API prompt."""
        name, kind = item["name"], item["kind"]
        if kind in MEDIA:
            self.check(value is not None or item.get("optional"), name,
                       f"is required (connect {'an' if kind in ('audio', 'image') else 'a'} {MEDIA[kind]})")
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

    def outputs(self, results: list) -> tuple:
        """The kept audio (when the first output is AUDIO), then the outputs read from fal's response ("from": its
        field, of the first take; "as": "json" for JSON text): "" / 0 when fal leaves one out, never None."""
        values = list(super().outputs(results)) if self.RETURN_TYPES[0] == "AUDIO" else []
        first = results[0].response if isinstance(results[0].response, dict) else {}
        for out in self.SPEC["outputs"]:
            if "from" in out:
                value = first.get(out["from"])
                values.append(int(value or 0) if out["type"] == "INT" else
                              json.dumps(value or [], ensure_ascii=False) if out.get("as") == "json" else
                              str(value or ""))
        return tuple(values)

    def billing(self, request: dict, clips: dict) -> dict:
        if self.SPEC.get("price", {}).get("input"):
            from ..media.audio import duration

            return {"seconds": sum(duration(clip) for clip in clips.values()) or None, "characters": None}
        return super().billing(request, clips)


def _attributes(name: str, spec: dict) -> dict:
    items, price = spec["inputs"], spec.get("price", {})
    kinds = {i["name"]: i["kind"] for i in items}
    return {
        "SPEC": spec, "ENDPOINT": spec["endpoint"], "DISPLAY_NAME": spec["name"], "DESCRIPTION": spec["description"],
        "CATEGORY": f"audio/fal/{spec['task']}", "__module__": __name__,
        "RETURN_TYPES": tuple(o["type"] for o in spec["outputs"]),
        "RETURN_NAMES": tuple(o["name"] for o in spec["outputs"]),
        "SENDS_SEED": "seed" in spec, "SEED_MAX": spec.get("seed", {}).get("maximum", w.SEED_MAX),
        "REQUIRED_TEXT": tuple(i["name"] for i in items if i.get("required") and i["kind"] in TEXT),
        "AUDIO_INPUTS": {i["name"]: i["field"] for i in items if i["kind"] == "audio" and "field" in i},
        "IMAGE_INPUTS": {i["name"]: i["field"] for i in items if i["kind"] == "image" and "field" in i},
        "UNSET": {i["name"]: i["unset"] for i in items if "unset" in i},
        "NULL": {i["name"]: i["null"] for i in items if "null" in i},
        "NESTED": {i["name"]: i["field"] for i in items if "." in i.get("field", "") and kinds[i["name"]] not in MEDIA},
        "OVERRIDES": {i["name"]: i["replaces"] for i in items if "replaces" in i},
        "NUMERIC_CHOICES": tuple(i["name"] for i in items if i.get("number")),
        "OUTPUT_SECONDS": price.get("seconds"), "TEXT_FIELD": price.get("characters"),
        "INPUT_SECONDS": tuple(spec["input_seconds"]) if "input_seconds" in spec else None,
        "RESULT_FILE": spec.get("result_file", "audio"), "SUCCESSOR": spec.get("successor", ""),
    }


def node_class(name: str, spec: dict) -> type:
    """The node class of one spec: its hook (nodes/rules/) first, then SpecNode."""
    bases = (SpecNode,)
    if spec.get("hook"):
        module, _, hook = spec["hook"].partition(".")
        bases = (getattr(importlib.import_module(f".rules.{module}", __package__), hook), SpecNode)
    return type(name, bases, _attributes(name, spec))


def specs() -> dict:
    """Every curated spec, by class name, in the order of data/nodes/*.json."""
    found = {}
    for path in sorted(NODES_DIR.glob("*.json")):
        found.update(json.loads(path.read_text(encoding="utf-8")))
    return found


NODE_CLASSES = {name: node_class(name, spec) for name, spec in specs().items()}
# Module attributes too: a class is found by its module and name (copy, pickle, a second import of this module).
globals().update(NODE_CLASSES)
