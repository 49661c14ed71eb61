"""Issue 2: the example workflows load in ComfyUI's editor as saved, and run.

Each file in example_workflows/ is checked against the pack's own INPUT_TYPES (and a
small table of the core nodes they use, since ComfyUI is not installed here): node
types, widget values (count, order, type, range, enum, seed control), sockets, links,
and that no API key can be in it. Then each workflow is run as ComfyUI would run it
(widgets_values mapped to inputs by INPUT_TYPES order, links followed) against the
fal emulator, with the core nodes stubbed.
"""

import io
import json
import math
import re

import pytest
import torch

from emulator_models import FakeVideo, mp4_with_sound, serve_every_model
from support import CANARY_KEY, PACK_DIR, curated, pack_module, run_node

decode_audio = pack_module("media.audio").decode
video_file = pack_module("media.video").video_file

FOLDER = PACK_DIR / "example_workflows"
FILES = sorted(FOLDER.glob("*.json"))
FAL_KEY_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{20,}")
KEY_WIDGETS = {"key", "api_key", "fal_key"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}
# COMBOs of the files in ComfyUI's input folder: any file name of the right kind.
AUDIO_FILE, IMAGE_FILE, VIDEO_FILE = "AUDIO_FILE", "IMAGE_FILE", "VIDEO_FILE"
WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN", AUDIO_FILE, IMAGE_FILE, VIDEO_FILE)
# Editor-only nodes: never executed, saved without the S&R property.
VIRTUAL = {"Note", "MarkdownNote"}
MAX_RESOLUTION = 16384
# Sample rates the emulator answers with: the hand-written nodes' files, the catalog's, MMAudio's videos.
EMULATOR_RATES = (8000, 16000, 44100)

# The core nodes the examples use, as ComfyUI declares them: INPUT_TYPES, outputs (name, type),
# and widgets that exist only in the editor, with the value the editor saves for them.
CORE = {
    "SaveAudio": dict(inputs={"required": {"audio": ("AUDIO",),
                                           "filename_prefix": ("STRING", {"default": "audio/ComfyUI"})}},
                      outputs=[]),
    "PreviewAudio": dict(inputs={"required": {"audio": ("AUDIO",)}}, outputs=[]),
    "LoadAudio": dict(inputs={"required": {"audio": (AUDIO_FILE, {"audio_upload": True})}},
                      outputs=[("AUDIO", "AUDIO")], ui_widgets=[("audioUI", None), ("upload", None)]),
    "LoadImage": dict(inputs={"required": {"image": (IMAGE_FILE, {"image_upload": True})}},
                      outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")], ui_widgets=[("upload", "image")]),
    "LoadVideo": dict(inputs={"required": {"file": (VIDEO_FILE, {"video_upload": True})}},
                      outputs=[("VIDEO", "VIDEO")], ui_widgets=[("upload", "image")]),
    "PreviewAny": dict(inputs={"required": {"source": ("*", {})}}, outputs=[("STRING", "STRING")]),
    "RepeatImageBatch": dict(inputs={"required": {"image": ("IMAGE",),
                                                  "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}},
                             outputs=[("IMAGE", "IMAGE")]),
    "PrimitiveFloat": dict(inputs={"required": {"value": ("FLOAT", {"min": -(2**63 - 1), "max": 2**63 - 1})}},
                           outputs=[("FLOAT", "FLOAT")]),
    "Note": dict(inputs={"required": {"text": ("STRING", {"multiline": True})}}, outputs=[]),
    "MarkdownNote": dict(inputs={"required": {"text": ("STRING", {"multiline": True})}}, outputs=[]),
    "EmptyImage": dict(inputs={"required": {
        "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION}),
        "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION}),
        "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF})}}, outputs=[("IMAGE", "IMAGE")]),
    "CreateVideo": dict(inputs={"required": {"images": ("IMAGE",),
                                             "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0})},
                                "optional": {"audio": ("AUDIO",)}}, outputs=[("VIDEO", "VIDEO")]),
    "AudioMerge": dict(inputs={"required": {"audio1": ("AUDIO",), "audio2": ("AUDIO",),
                                            "merge_method": (["add", "mean", "subtract", "multiply"],)}},
                       outputs=[("AUDIO", "AUDIO")]),
    "SaveVideo": dict(inputs={"required": {"video": ("VIDEO",),
                                           "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                                           "format": (["auto", "mp4"], {"default": "auto"}),
                                           "codec": (["auto", "h264"], {"default": "auto"})}}, outputs=[]),
}


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def node_spec(nodes, node_type):
    """(INPUT_TYPES, [(output name, type)], editor-only widgets) of a pack or core node."""
    if node_type in CORE:
        core = CORE[node_type]
        return core["inputs"], core["outputs"], core.get("ui_widgets", [])
    cls = nodes[node_type]
    return cls.INPUT_TYPES(), list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES)), []


def is_widget(kind):
    return isinstance(kind, list) or kind in WIDGET_KINDS


def widget_type(kind):
    return "COMBO" if isinstance(kind, list) or kind in (AUDIO_FILE, IMAGE_FILE, VIDEO_FILE) else kind


def declared(nodes, node_type):
    """Inputs in INPUT_TYPES order: [(name, kind, options, optional)]."""
    spec, _, _ = node_spec(nodes, node_type)
    out = []
    for section in ("required", "optional"):
        for name, (kind, *options) in spec.get(section, {}).items():
            out.append((name, kind, options[0] if options else {}, section == "optional"))
    return out


def widget_slots(nodes, node_type):
    """What widgets_values holds, in order: (name, kind, options); seed adds its control, editor widgets None."""
    slots = []
    for name, kind, opts, _ in declared(nodes, node_type):
        if is_widget(kind):
            slots.append((name, kind, opts))
            if kind == "INT" and (name in ("seed", "noise_seed") or opts.get("control_after_generate")):
                slots.append((f"{name} control after generate", "CONTROL", {}))
    _, _, ui = node_spec(nodes, node_type)
    return slots + [(name, "UI", {"saved": value}) for name, value in ui]


def fits(kind, opts, value):
    if isinstance(kind, list):
        return value in kind
    if kind == "CONTROL":
        return value in SEED_CONTROLS
    if kind == "UI":
        return value == opts["saved"]
    if kind == AUDIO_FILE:
        return isinstance(value, str) and re.search(r"\.(wav|mp3|flac|ogg|m4a|aac)$", value) is not None
    if kind == IMAGE_FILE:
        return isinstance(value, str) and re.search(r"\.(png|jpe?g|webp)$", value) is not None
    if kind == VIDEO_FILE:
        return isinstance(value, str) and re.search(r"\.(mp4|webm|mov|mkv)$", value) is not None
    if kind == "STRING":
        return isinstance(value, str)
    if kind == "BOOLEAN":
        return isinstance(value, bool)
    if kind == "INT" and (not isinstance(value, int) or isinstance(value, bool)):
        return False
    if kind == "FLOAT" and (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)):
        return False
    return opts.get("min", -math.inf) <= value <= opts.get("max", math.inf)


def test_the_examples_cover_every_model_node_and_the_issue_2_pairs(nodes):
    names = {path.name for path in FILES}
    assert {"lyria2_to_save_audio.json", "ace_step_to_preview_audio.json"} <= names
    used = {node["type"] for path in FILES for node in load(path)["nodes"]}
    models = curated(nodes)
    assert models | {"FalAudioClient"} <= used, f"no example for {sorted(models | {'FalAudioClient'} - used)}"
    # The chains the README promises, by their wiring.
    edges = set()
    for path in FILES:
        data = load(path)
        kinds = {node["id"]: node["type"] for node in data["nodes"]}
        edges |= {(kinds[o], kinds[t]) for _, o, _, t, _, _ in data["links"]}
    for edge in [("FalAudioLyria2", "SaveAudio"), ("FalAudioAceStep", "PreviewAudio"),
                 ("FalAudioAceStep", "FalAudioAceStepInpaint"), ("FalAudioAceStepInpaint", "FalAudioAceStepOutpaint"),
                 ("FalAudioAceStepOutpaint", "SaveAudio"), ("FalAudioAceStep", "FalAudioMiniMaxMusic"),
                 ("FalAudioMiniMaxMusic", "SaveAudio"), ("LoadAudio", "FalAudioDiffRhythm"),
                 ("EmptyImage", "CreateVideo"), ("CreateVideo", "SaveVideo"),
                 # issue 20's examples of generated nodes
                 ("FalAudioMinimaxVoiceClone", "FalAudioMiniMaxSpeech28HD"), ("LoadVideo", "FalAudioKlingVideoVideoToAudio"),
                 ("FalAudioKlingVideoVideoToAudio", "SaveVideo"), ("FalAudioElevenlabsTextToDialogueElevenV3", "SaveAudio"),
                 ("FalAudioElevenlabsSpeechToTextScribeV2", "PreviewAny"), ("LoadAudio", "FalAudioSamAudioSeparate"),
                 ("FalAudioSamAudioSeparate", "SaveAudio"), ("LoadVideo", "FalAudioMMAudioVideoToAudio")]:
        assert edge in edges, edge
    assert any(target == "CreateVideo" and origin.startswith("FalAudio") for origin, target in edges)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_saved_like_the_editor_saves(path):
    data = load(path)
    assert data["version"] == 0.4
    assert isinstance(data["groups"], list) and isinstance(data["config"], dict) and isinstance(data["extra"], dict)
    ids = [node["id"] for node in data["nodes"]]
    assert len(ids) == len(set(ids)) and data["last_node_id"] >= max(ids)
    link_ids = [link[0] for link in data["links"]]
    assert len(link_ids) == len(set(link_ids)) and data["last_link_id"] >= max(link_ids, default=0)
    orders = [node["order"] for node in data["nodes"]]
    assert sorted(orders) == list(range(len(orders)))
    for node in data["nodes"]:
        assert set(node) >= {"id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties",
                             "widgets_values"}, node["id"]
        assert len(node["pos"]) == 2 and len(node["size"]) == 2 and node["mode"] == 0
        if node["type"] not in VIRTUAL:
            assert node["properties"]["Node name for S&R"] == node["type"]
        for entry in node["inputs"]:
            assert set(entry) >= {"name", "type", "link"}
        for slot, entry in enumerate(node["outputs"]):
            assert set(entry) >= {"name", "type", "links"} and entry.get("slot_index", slot) == slot
            assert entry["links"] is None or isinstance(entry["links"], list)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_nodes_and_widget_values_fit_the_node_definitions(path, nodes):
    for node in load(path)["nodes"]:
        where = f"{path.name} node {node['id']} ({node['type']})"
        assert node["type"] in nodes or node["type"] in CORE, f"{where}: unknown node type"
        slots = widget_slots(nodes, node["type"])
        values = node["widgets_values"]
        assert len(values) == len(slots), f"{where}: {len(values)} widget values for {[s[0] for s in slots]}"
        for (name, kind, opts), value in zip(slots, values):
            assert fits(kind, opts, value), f"{where}: {name} = {value!r} does not fit {kind} {opts}"
        # Sockets: every socket input is listed (once, declared type); other entries are widgets turned inputs.
        inputs = declared(nodes, node["type"])
        sockets = {name: kind for name, kind, _, _ in inputs if not is_widget(kind)}
        widgets = {name: widget_type(kind) for name, kind, _, _ in inputs if is_widget(kind)}
        listed = [entry["name"] for entry in node["inputs"]]
        assert len(listed) == len(set(listed)), where
        assert [n for n in listed if n in sockets] == list(sockets), f"{where}: sockets {listed} != {list(sockets)}"
        for entry in node["inputs"]:
            if entry["name"] in sockets:
                assert "widget" not in entry and entry["type"] == sockets[entry["name"]], where
            else:
                assert entry.get("widget") == {"name": entry["name"]}, f"{where}: {entry['name']} is not an input"
                assert entry["type"] == widgets[entry["name"]], where
        # A required socket left open would stop the queue with "Required input is missing".
        for name, kind, _, optional in inputs:
            if not is_widget(kind) and not optional:
                assert next(e for e in node["inputs"] if e["name"] == name)["link"] is not None, f"{where}: {name}"
        _, outputs, _ = node_spec(nodes, node["type"])
        assert [(o["name"], o["type"]) for o in node["outputs"]] == outputs, where


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_links_join_outputs_and_inputs_of_the_same_type(path, nodes):
    data = load(path)
    by_id = {node["id"]: node for node in data["nodes"]}
    table = {}
    for link in data["links"]:
        assert len(link) == 6, link
        link_id, origin, origin_slot, target, target_slot, kind = link
        table[link_id] = link
        source, dest = by_id[origin], by_id[target]
        output, entry = source["outputs"][origin_slot], dest["inputs"][target_slot]
        assert link_id in (output["links"] or []) and entry["link"] == link_id, link
        _, declared_outputs = node_spec(nodes, source["type"])[:2]
        assert output["type"] == declared_outputs[origin_slot][1] == kind, link
        assert entry["type"] in (kind, "*"), link  # "*": an input of any type (Preview as Text)
        assert source["order"] < dest["order"], f"{link}: runs before its input exists"
    # Every reference from a node is in the link table, pointing back at that node and slot.
    for node in data["nodes"]:
        for slot, entry in enumerate(node["inputs"]):
            if entry["link"] is not None:
                assert table[entry["link"]][3:5] == [node["id"], slot]
        for slot, output in enumerate(node["outputs"]):
            for link_id in output["links"] or []:
                assert table[link_id][1:3] == [node["id"], slot]
    # ComfyUI accepts one link per input.
    targets = [(t, ts) for _, _, _, t, ts, _ in data["links"]]
    assert len(targets) == len(set(targets))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_no_api_key_in_the_file(path, nodes):
    text = path.read_text(encoding="utf-8")
    assert CANARY_KEY not in text
    assert not FAL_KEY_PATTERN.search(text)
    assert not re.search(r"[A-Za-z0-9_\-]{6,}:[A-Za-z0-9_\-]{16,}", text), "something that looks like KEY_ID:SECRET"
    for node in load(path)["nodes"]:
        names = {slot[0] for slot in widget_slots(nodes, node["type"])} | {e["name"] for e in node["inputs"]}
        assert not names & KEY_WIDGETS, node["type"]


# --- Running the examples -----------------------------------------------------------------------


def tone(seconds, rate=8000, channels=2):
    t = torch.arange(int(seconds * rate), dtype=torch.float32) / rate
    return {"waveform": torch.stack([0.5 * torch.sin(2 * math.pi * 220 * (c + 1) * t) for c in range(channels)])
            .unsqueeze(0), "sample_rate": rate}


class CoreStubs:
    """Stand-ins for the core nodes: they record what reached them. Images are kept tiny."""

    def __init__(self):
        self.received = []

    def run(self, node_type, **inputs):
        self.received.append((node_type, inputs))
        if node_type == "LoadAudio":
            return (tone(20.0),)
        if node_type == "LoadImage":
            return (torch.zeros(1, 64, 64, 3), torch.zeros(1, 64, 64))
        if node_type == "RepeatImageBatch":
            return (inputs["image"].repeat(inputs["amount"], 1, 1, 1),)
        if node_type == "PrimitiveFloat":
            return (float(inputs["value"]),)
        if node_type == "EmptyImage":
            return (torch.zeros(inputs["batch_size"], 16, 16, 3),)
        if node_type == "AudioMerge":  # core: audio2 cut or padded to audio1's length, then mixed
            one, two = inputs["audio1"]["waveform"], inputs["audio2"]["waveform"]
            two = torch.nn.functional.pad(two, (0, max(0, one.shape[-1] - two.shape[-1])))[..., :one.shape[-1]]
            mixed = {"add": one + two, "mean": (one + two) / 2, "subtract": one - two, "multiply": one * two}
            return ({"waveform": mixed[inputs["merge_method"]], "sample_rate": inputs["audio1"]["sample_rate"]},)
        if node_type == "CreateVideo":
            return ({"images": inputs["images"], "audio": inputs.get("audio"), "fps": inputs["fps"]},)
        if node_type == "LoadVideo":  # a file in the input folder, as comfy_api's VideoFromFile
            return (FakeVideo(io.BytesIO(mp4_with_sound(4.0))),)  # Kling takes 3-20 s, MMAudio 1-30 s
        if node_type == "PreviewAny":
            return (inputs["source"],)
        return ()


def sent(payload: dict, cls, name: str):
    """A node input's value in the request: under its fal field name (OVERRIDES), nested where the node nests it."""
    field = cls.OVERRIDES.get(name, name)
    for key in cls.NESTED.get(field, field).split("."):
        payload = payload[key]
    return payload


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_example_runs_against_fal(path, fal, nodes):
    data = load(path)
    serve_every_model(fal, nodes)
    links = {link[0]: link for link in data["links"]}
    results, calls, core = {}, {}, CoreStubs()
    for node in sorted(data["nodes"], key=lambda n: n["order"]):
        if node["type"] in VIRTUAL:
            continue
        inputs = {}
        for (name, kind, _), value in zip(widget_slots(nodes, node["type"]), node["widgets_values"]):
            if kind not in ("CONTROL", "UI"):
                inputs[name] = value
        for entry in node["inputs"]:
            if entry["link"] is not None:
                _, origin, origin_slot, _, _, _ = links[entry["link"]]
                inputs[entry["name"]] = results[origin][origin_slot]
        calls[node["id"]] = inputs
        if node["type"] in CORE:
            results[node["id"]] = core.run(node["type"], **inputs)
        else:
            results[node["id"]] = run_node(nodes[node["type"]], **inputs)
            assert len(results[node["id"]]) == len(node["outputs"])

    # Every model node paid for its takes, and values wired into our model nodes reached fal as sent.
    # (the any-endpoint node's endpoint is a widget, not a class attribute)
    models = [n for n in data["nodes"]
              if getattr(nodes.get(n["type"]), "ENDPOINT", "") or n["type"] == "FalAudioAnyEndpoint"]
    assert len(fal.submissions) == sum(calls[n["id"]]["takes"] for n in models)
    for node in models:
        if node["type"] not in curated(nodes):
            continue
        endpoint = nodes[node["type"]].ENDPOINT
        (payload,) = [s.payload for s in fal.submissions if s.endpoint == endpoint]
        for entry in node["inputs"]:
            if entry.get("widget") and entry["link"] is not None and nodes[node["type"]]().item(
                    entry["name"]).get("via") != "hook":  # a hook's input (MMAudio's frame_rate) is not sent as is
                value = calls[node["id"]][entry["name"]]
                assert sent(payload, nodes[node["type"]], entry["name"]) == value, entry["name"]
                assert isinstance(value, (str, int, float)) and value != "", entry["name"]
    # What reached the core output nodes is AUDIO as ComfyUI defines it.
    finals = [inputs for node_type, inputs in core.received if node_type in ("SaveAudio", "PreviewAudio")]
    finals += [inputs for node_type, inputs in core.received if node_type == "CreateVideo"]
    # A VIDEO from a fal node reaching Save Video carries a soundtrack.
    videos = [inputs["video"] for node_type, inputs in core.received
              if node_type == "SaveVideo" and not isinstance(inputs["video"], dict)]
    for video in videos:
        finals.append({"audio": decode_audio(video_file(video, "Save Video", "video")[0])})
    # Text shown by Preview as Text is what the fal node put out: SRT cues from an srt output.
    for node in data["nodes"]:
        if node["type"] == "PreviewAny":
            (entry,) = node["inputs"]
            _, origin, slot, _, _, _ = links[entry["link"]]
            shown = calls[node["id"]]["source"]
            assert isinstance(shown, str) and shown.strip(), shown
            if next(n for n in data["nodes"] if n["id"] == origin)["outputs"][slot]["name"] == "srt":
                assert re.match(r"1\n00:00:00,000 --> 00:00:\d\d,\d{3}\n\S", shown), shown
    assert finals
    for inputs in finals:
        audio = inputs["audio"]
        wave = audio["waveform"]
        assert wave.dtype == torch.float32 and wave.dim() == 3 and wave.shape[0] >= 1 and wave.shape[1] in (1, 2)
        assert audio["sample_rate"] in EMULATOR_RATES and wave.shape[-1] > 0
