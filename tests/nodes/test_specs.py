"""Curated node specs (data/nodes/*.json, rendered by nodes/spec.py) against fal's schemas (data/catalog.json),
and the checks the specs declare, run as a user meets them: before anything is uploaded or paid.

A spec is the contract's reading for one node: every input it sends names a field of fal's schema (nested settings
and replacing widgets resolved), its ranges lie inside the ranges fal states, its options are fal's options, and
its defaults are fal's defaults where fal states one (an input a user leaves "not set" sends nothing).
"""

import io
import json

import pytest
import torch

from emulator_models import FakeVideo, tiny_mp4
from support import PACK_DIR, curated, defaults, run_node

SPECS = {}
for _path in sorted((PACK_DIR / "data" / "nodes").glob("*.json")):
    SPECS.update(json.loads(_path.read_text(encoding="utf-8")))
CATALOG = json.loads((PACK_DIR / "data" / "catalog.json").read_text(encoding="utf-8"))["endpoints"]
NUMBERS = [(name, item) for name, spec in SPECS.items() for item in spec["inputs"] if item["kind"] in ("int", "float")]
LENGTHS = [(name, item) for name, spec in SPECS.items() for item in spec["inputs"] if "max_length" in item]
# Inputs a hook reads in another shape (the inputs mark them "via": "hook"); everything else a spec sends by name.
FRAMES = torch.zeros((24, 8, 8, 3))


def fal_field(spec: dict, item: dict):
    """fal's schema of the field an input fills (None: fal's schema has no such field)."""
    if item.get("replaces"):
        item = next(i for i in spec["inputs"] if i["name"] == item["replaces"])
    top, _, sub = item.get("field", item["name"]).partition(".")
    field = {i["name"]: i["fal"] for i in CATALOG[spec["endpoint"]]["inputs"]}.get(top)
    return (field.get("properties") or {}).get(sub) if field is not None and sub else field


def test_every_spec_is_a_registered_node_and_every_curated_endpoint_has_its_spec(nodes):
    assert set(SPECS) == curated(nodes)
    for name, spec in SPECS.items():
        entry = CATALOG.get(spec["endpoint"])
        if entry is None:  # fal no longer lists it: the node stays for saved workflows, under deprecated
            assert spec["task"] == "deprecated" and spec["successor"], name
        else:
            assert entry["curated"] == name, name
    assert {e["curated"] for e in CATALOG.values() if "curated" in e} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s["endpoint"] in CATALOG))
def test_a_spec_sends_only_fal_fields_within_fals_ranges_options_and_defaults(name):
    spec = SPECS[name]
    for item in spec["inputs"]:
        if item.get("via") == "hook":
            continue
        fal = fal_field(spec, item)
        assert fal is not None, f"{name}: '{item['name']}' fills no field of fal's schema"
        if item["kind"] in ("int", "float"):
            assert item["min"] >= fal.get("minimum", item["min"]), (name, item["name"], fal)
            assert item["max"] <= fal.get("maximum", item["max"]), (name, item["name"], fal)
        if item["kind"] == "choice" and "enum" in fal:
            offered = {str(o) for o in fal["enum"]} | {str(item.get("unset")), str(item.get("null"))}
            assert set(item["options"]) <= offered, (name, item["name"], fal["enum"])
        sends_fals_default = "default" in fal and not item.get("replaces") and not (
            item.get("optional") and item["kind"] in ("text", "multiline", "json"))
        if sends_fals_default and item.get("default", "") != item.get("unset", object()):
            default = item.get("default", "" if item["kind"] in ("text", "multiline") else False)
            assert str(default) == str(fal["default"]) or default == fal["default"], (name, item["name"], fal)


def _inputs(nodes, name: str, **changes) -> dict:
    """The node's defaults with its sockets connected (a 2 s clip, frames, a video) and the changes."""
    values = defaults(nodes[name], **changes)
    for item in SPECS[name]["inputs"]:
        if item["kind"] == "audio" and not item.get("optional"):
            values[item["name"]] = {"waveform": torch.rand((1, 1, 16000)) - 0.5, "sample_rate": 8000}
        if item["kind"] == "video" and not item.get("optional"):
            values[item["name"]] = FakeVideo(io.BytesIO(tiny_mp4()))
    if name == "FalAudioMMAudioVideoToAudio":
        values["images"] = FRAMES
    return values


@pytest.mark.parametrize("name,item", NUMBERS, ids=[f"{n}-{i['name']}" for n, i in NUMBERS])
def test_a_number_outside_its_declared_range_is_refused_before_anything_is_sent(fal, nodes, name, item):
    """ComfyUI checks a widget's range only for a typed value: over a link or in an API prompt anything arrives."""
    below, above = item["min"] - (1 if item["kind"] == "int" else 0.5), item["max"] + 1
    for value in (below, above):
        if value == item.get("unset"):
            continue
        with pytest.raises(ValueError) as caught:
            run_node(nodes[name], **_inputs(nodes, name, **{item["name"]: value}))
        unset = f" (or {item['unset']:g}: not set)" if isinstance(item.get("unset"), (int, float)) else ""
        declared = f"{nodes[name].DISPLAY_NAME}: '{item['name']}' is {value:g}; it must be " \
                   f"{item['min']:g}-{item['max']:g}{unset}"
        # A model's own rule may refuse it first, more precisely (MMAudio: longer than the frames), naming it too.
        assert str(caught.value).startswith(declared if "hook" not in SPECS[name] else
                                        f"{nodes[name].DISPLAY_NAME}: '{item['name']}' is {value:g}"), \
            str(caught.value)
    assert fal.submissions == [] and fal.uploads == []


@pytest.mark.parametrize("name,item", LENGTHS, ids=[f"{n}-{i['name']}" for n, i in LENGTHS])
def test_a_text_over_its_declared_length_is_refused_before_anything_is_sent(fal, nodes, name, item):
    with pytest.raises(ValueError) as caught:
        run_node(nodes[name], **_inputs(nodes, name, **{item["name"]: "x" * (item["max_length"] + 1)}))
    assert f"'{item['name']}' has {item['max_length'] + 1} characters" in str(caught.value)
    assert "xxxx" not in str(caught.value)  # the text itself is not echoed back
    assert fal.submissions == [] and fal.uploads == []


def test_a_whole_number_input_refuses_a_fraction(fal, nodes):
    with pytest.raises(ValueError, match=r"'seconds_total' is 12\.5; it must be a whole number"):
        run_node(nodes["FalAudioStableAudio25TextToAudio"],
                 **defaults(nodes["FalAudioStableAudio25TextToAudio"], prompt="x", seconds_total=12.5))
    assert fal.submissions == []


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s["endpoint"] in CATALOG))
def test_inputs_most_users_never_touch_are_advanced_on_curated_nodes_too(nodes, name):
    """What the catalog folds away for a generated node (guidance internals, schedulers, steps, output formats)
    a curated node folds away as well, in the editor (the `advanced` input option)."""
    spec, folded = SPECS[name], {i["name"] for i in CATALOG[SPECS[name]["endpoint"]]["inputs"] if i.get("advanced")}
    declared = {**nodes[name].INPUT_TYPES()["required"], **nodes[name].INPUT_TYPES()["optional"]}
    for item in spec["inputs"]:
        if item.get("field", item["name"]).split(".")[-1] in folded or item["name"] in folded:
            assert declared[item["name"]][1].get("advanced") is True, (name, item["name"])
