"""Generated nodes: every endpoint of data/catalog.json without a curated node (data/nodes/*.json), as a node class
rendered like every curated one (nodes/spec.py), from the spec its catalog entry reads as (spec_of). No Python file
per node; no per-model code in the base or the job runner.

At import only data/catalog-index.json (class, endpoint, display name, task, outputs) is read; the catalog file
itself is parsed the first time a generated node is declared (INPUT_TYPES) or created.
"""

import json
from pathlib import Path

from .spec import SpecNode, attributes

CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "catalog.json"
INDEX_PATH = CATALOG_PATH.with_name("catalog-index.json")
NOT_SET = "(not set)"
UNSET_NOTE = " Not set: not sent, fal applies its own default."
# Pack limit for input clips of a generated node: the decode limit (20 minutes).
INPUT_SECONDS = [0.1, 1200.0]
# A number widget's range where fal states none.
INT_RANGE = (-(2 ** 31), 2 ** 31 - 1)
FLOAT_RANGE = (-1e9, 1e9)
SEED_MAX = 2 ** 31 - 1
OUTPUT_TYPES = {"audio": "AUDIO", "audio_list": "AUDIO", "video": "VIDEO", "video_list": "VIDEO", "text": "STRING",
                "url": "STRING", "srt": "STRING"}

_catalog = None


def catalog() -> dict:
    """data/catalog.json's endpoints, parsed once."""
    global _catalog
    if _catalog is None:
        _catalog = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))["endpoints"]
    return _catalog


def description(endpoint: str, display: str) -> str:
    return (f"fal's {display[:-6]} ({endpoint}), a node generated from fal's schema: its widgets, sockets and "
            "outputs follow the model's API; response_json holds fal's whole answer.")


def spec_of(endpoint: str, entry: dict) -> dict:
    """A catalog entry (fal's schema of each field, how the node shows it) -> the spec nodes/spec.py renders."""
    spec = {"endpoint": endpoint, "name": entry["name"], "task": entry["task"],
            "description": description(endpoint, entry["name"]), "inputs": [spec_item(i) for i in entry["inputs"]],
            "outputs": [spec_output(o) for o in entry["outputs"] if o["kind"] != "data"]
            + [{"name": "response_json", "type": "STRING", "as": "response"}],
            "price": spec_price(entry["price"].get("counted", {})), "input_seconds": INPUT_SECONDS}
    if "seed" in entry:
        spec["seed"] = {"maximum": min(int(entry["seed"].get("maximum", SEED_MAX)), SEED_MAX)}
    if entry.get("successor"):
        name = (catalog().get(entry["successor"]) or {}).get("name")
        spec["successor"] = f"{name} node ({entry['successor']})" if name else f"node for {entry['successor']}"
    return spec


def spec_item(item: dict) -> dict:
    """One catalog input -> a spec input: fal's optional fields are optional inputs, fields fal gives no default
    for are "not set" unless set (a "(not set)" option, a number typed in a text box), fal's schema checks the value."""
    fal, kind, tooltip = item["fal"], item["kind"], item["tooltip"]
    name = item.get("socket") or item.get("widget") or item["name"]
    out = {"name": name, "kind": kind, "schema": fal}
    if name != item["name"] or "socket" in item:
        out["field"] = item["name"]
    if not fal.get("required"):
        out["optional"] = True
    elif kind in ("text", "multiline", "json", "url"):
        out["required"] = True
    if "socket" in item:
        batch = {"audio_list": " A batch: every clip of it is sent, as one list.",
                 "image_list": " A batch: every image of it is sent (PNG), as one list.",
                 "video_list": " Sent as a list of one video."}.get(kind, "")
        sent = " Saved to a file and uploaded." if kind.startswith("video") else ""
        length = (f" Clips of {INPUT_SECONDS[0]:g}-{INPUT_SECONDS[1]:g} s (pack limit)."
                  if kind.startswith("audio") else "")
        return {**out, "tooltip": f"{tooltip}{batch}{sent}{length} (fal field: {item['name']})"}
    if item.get("advanced"):
        out["advanced"] = True
    empty = "" if fal.get("required") else " Empty: not sent."
    if kind in ("text", "multiline", "url"):
        out.update(default=fal.get("default") if isinstance(fal.get("default"), str) else "",
                   tooltip=tooltip + empty)
    elif kind == "json":
        default = fal.get("default")
        example = json.dumps(_example(fal), ensure_ascii=False)
        out.update(default=json.dumps(default, indent=1) if default not in (None, [], {}, "") else "",
                   tooltip=f"{tooltip} JSON, checked against fal's schema before anything is paid, e.g. {example}"
                           + empty)
    elif kind in ("bool", "choice") and item.get("unset"):
        options = ["true", "false"] if kind == "bool" else [str(o) for o in fal["enum"]]
        out.update(kind="choice", options=[NOT_SET, *options], default=NOT_SET, unset=NOT_SET,
                   tooltip=tooltip + UNSET_NOTE)
    elif kind == "bool":
        out.update(default=bool(fal.get("default", False)), tooltip=tooltip)
    elif kind == "choice":
        options = [str(o) for o in fal["enum"]]
        out.update(options=options, default=str(fal["default"]) if str(fal.get("default")) in options else options[0],
                   tooltip=tooltip)
    elif item.get("unset"):  # a number fal gives no default for: a text box, empty = not set
        out.update(kind="text", default="", tooltip=f"{tooltip} A {'whole ' if kind == 'int' else ''}number"
                                                    f"{_span(fal)}; empty: not sent, fal applies its own default.")
    else:
        low, high = INT_RANGE if kind == "int" else FLOAT_RANGE
        low, high = fal.get("minimum", low), fal.get("maximum", high)
        default = fal.get("default", low if "minimum" in fal else max(low, min(high, 0)))
        cast = int if kind == "int" else float
        out.update(default=cast(default), min=cast(low), max=cast(high), tooltip=tooltip)
        if kind == "float":
            out["step"] = 0.01 if high - low <= 10 else 0.1
    return out


def spec_output(out: dict) -> dict:
    """One catalog output -> a spec output read from fal's response."""
    kind, name = out["kind"], out["name"]
    found = {"name": name, "type": OUTPUT_TYPES[kind], "from": out.get("from", name)}
    if kind.endswith("_list"):
        found["list"] = True
    if kind in ("audio", "video", "audio_list", "video_list") and not out["fal"].get("required"):
        found["optional"] = True
    if kind in ("url", "srt"):
        found["as"] = kind
    return found


def spec_price(counted: dict) -> dict:
    """The catalog's price counting -> a spec's price facts (per request, output or unknown: none before the run)."""
    by = counted.get("by")
    if by == "seconds":
        return {"seconds": counted["field"], **({"scale": counted["scale"]} if "scale" in counted else {})}
    if by == "characters":
        return {"characters": counted["field"]}
    return {"input": counted["socket"]} if by == "input" else {}


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


def _span(fal: dict) -> str:
    low, high = fal.get("minimum"), fal.get("maximum")
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    return f" of at least {low:g}" if low is not None else f" of at most {high:g}" if high is not None else ""


class CatalogNode(SpecNode):
    """A generated node: a SpecNode whose spec is read from the catalog on first use (the class attributes the
    index gives are set at import)."""

    SPEC = None

    def __init__(self):
        type(self)._load()

    @classmethod
    def _load(cls) -> dict:
        if cls.__dict__.get("SPEC") is None:
            for key, value in attributes(spec_of(cls.ENDPOINT, catalog()[cls.ENDPOINT])).items():
                setattr(cls, key, value)
        return cls.SPEC

    @classmethod
    def INPUT_TYPES(cls):
        cls._load()
        return super().INPUT_TYPES()


def node_classes() -> dict:
    """{class name: generated node class} from the index (no catalog parse)."""
    classes = {}
    for name, endpoint, display, task, types, names in json.loads(INDEX_PATH.read_text(encoding="utf-8")):
        classes[name] = type(name, (CatalogNode,), {
            "ENDPOINT": endpoint, "DISPLAY_NAME": display, "CATEGORY": f"audio/fal/{task}",
            "RETURN_TYPES": tuple(types), "RETURN_NAMES": tuple(names), "__module__": __name__,
            "DESCRIPTION": description(endpoint, display)})
    return classes


# Module attributes too: a class is found by its module and name (copy, pickle, a second import of this module).
NODE_CLASSES = node_classes()
globals().update(NODE_CLASSES)
