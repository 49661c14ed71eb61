"""Issue 20: every catalog endpoint without a hand-written node is a generated node that sends what fal's schema
describes (checked by the emulator's contract of that endpoint), refuses bad input before paying, and returns
outputs of the kinds it declares."""

import json

import pytest
import torch

from emulator_models import FakeVideo, mp4_with_sound, tiny_mp4
from support import PACK_DIR, defaults, pack_module, run_node, script_module

# What core CreateVideo -> SaveVideo does with AUDIO, as tests/media/test_video.py checks it for every other node.
_video_tests = script_module("tests/media/test_video.py")
frames, mux_like_create_video = _video_tests.frames, _video_tests.mux_like_create_video

INDEX = json.loads((PACK_DIR / "data" / "catalog-index.json").read_text(encoding="utf-8"))
GENERATED = sorted(name for name, *_ in INDEX)
CATALOG = json.loads((PACK_DIR / "data" / "catalog.json").read_text(encoding="utf-8"))["endpoints"]
SPECS = {}
for _path in sorted((PACK_DIR / "data" / "nodes").glob("*.json")):
    SPECS.update(json.loads(_path.read_text(encoding="utf-8")))
# The flagships (issue 20): curated specs that show fal's whole response, as they did as generated nodes.
FLAGSHIPS = sorted(n for n, s in SPECS.items() if any(o.get("as") == "response" for o in s["outputs"]))
# What a user must set on a flagship beyond fal's required fields (a flagship's rules refuse fal's defaults).
NEEDS = {
    "FalAudioElevenlabsTextToDialogueElevenV3": {"inputs": json.dumps([{"text": "Hello there.", "voice": "Aria"}])},
    "FalAudioStableAudio3MediumAudioInpainting": {"mask_start_seconds": 0.25, "mask_end_seconds": 0.75},
    "FalAudioStableAudio3MediumAudioOutpainting": {"extend_seconds_after": 2.0},
}


def example(schema, depth=0):
    """A value fal's schema takes: required properties only, enum's first option, ranges' lower end."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: example(v, depth + 1) for k, v in (schema.get("properties") or {}).items() if v.get("required")}
    if kind == "array":
        return [example(schema.get("items") or {}, depth + 1) for _ in range(max(1, schema.get("min_items", 1)))]
    if kind == "file":
        return "https://v3.fal.media/files/example/input.bin"
    if kind == "string":
        return "example text".ljust(schema.get("min_length", 0), "x")
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return False if kind == "boolean" else {}


def tone(seconds=1.0, batch=1):
    t = torch.arange(int(16000 * seconds)) / 16000
    return {"waveform": (0.3 * torch.sin(2 * torch.pi * 330 * t)).repeat(batch, 1, 1), "sample_rate": 16000}


def video_input(tmp_path, seconds=None):
    """A loaded video: the emulator's tiny one, or one of `seconds` (a model with a least length)."""
    path = tmp_path / "input.mp4"
    path.write_bytes(tiny_mp4() if seconds is None else mp4_with_sound(seconds, rate=16000, channels=1, fps=8))
    return FakeVideo(str(path))


def filled_inputs(cls, tmp_path):
    """A fresh node's widget values (fal's optional fields are optional inputs, with their defaults too), with
    what a user must give: required text, JSON and media (clips and videos as long as the model needs)."""
    values = defaults(cls)
    least = max(1.0, (cls.INPUT_SECONDS or (0, 0))[0] + 0.5)
    for field, (kind, *options) in cls.INPUT_TYPES()["optional"].items():
        if options and "default" in options[0]:
            values[field] = options[0]["default"]
    for item in CATALOG[cls.ENDPOINT]["inputs"]:
        socket, fal, kind = item.get("socket") or item.get("widget") or item["name"], item["fal"], item["kind"]
        if not fal.get("required"):
            continue
        if kind in ("text", "multiline") and not values.get(socket):
            values[socket] = example(fal)
        elif kind == "json":
            values[socket] = json.dumps(example(fal))
        elif kind == "url":
            values[socket] = "https://v3.fal.media/files/example/speaker.bin"
        elif kind in ("audio", "audio_list"):
            values[socket] = tone(least, 2 if kind == "audio_list" else 1)
        elif kind in ("image", "image_list"):
            values[socket] = torch.rand(2 if kind == "image_list" else 1, 16, 16, 3)
        elif kind in ("video", "video_list"):
            values[socket] = video_input(tmp_path, (cls.SPEC.get("video_seconds") or [None])[0])
    return {**values, **NEEDS.get(cls.__name__, {})}


def sent_default(item):
    """What a fresh node sends for an input it shows with its default (None: not sent)."""
    fal = item["fal"]
    if item.get("unset") or fal.get("default") in (None, [], {}, ""):
        return None
    return fal["default"]


def test_every_catalog_endpoint_is_curated_or_generated_or_excluded_with_a_reason(nodes):
    full = json.loads((PACK_DIR / "data" / "catalog.json").read_text(encoding="utf-8"))
    curated = {s["curated"] for s in full["endpoints"].values() if "curated" in s}
    assert curated <= set(nodes)
    assert {e for e, s in full["endpoints"].items() if "curated" not in s} == {e for _, e, *_ in INDEX}
    assert all(x["reason"] for x in full["excluded"].values())
    assert {e for e, x in full["excluded"].items()} >= {"fal-ai/stable-audio-3-trainer", "openrouter/router/audio",
                                                         "fal-ai/maya/stream", "fal-ai/personaplex/realtime"}
    names = [nodes[n].DISPLAY_NAME for n in GENERATED]
    assert len(set(names)) == len(names) and all(n.endswith(" (fal)") for n in names)
    for name in GENERATED:
        cls = nodes[name]
        assert name == "FalAudio" + name[8:] and cls.CATEGORY.split("/")[:2] == ["audio", "fal"]
        assert cls.CATEGORY.split("/")[2] in ("music", "sound effects", "speech", "voice", "transcription",
                                              "separation and cleanup", "video to audio", "deprecated")
    assert nodes["FalAudioElevenlabsVoiceChanger"].DISPLAY_NAME == "ElevenLabs Voice Changer (fal)"
    assert nodes["FalAudioElevenlabsVoiceChanger"].CATEGORY == "audio/fal/voice"
    assert nodes["FalAudioSamAudioSeparate"].CATEGORY == "audio/fal/separation and cleanup"


def test_generated_files_are_what_the_script_makes_of_the_catalog():
    """data/catalog-index.json, the help pages and docs/catalog.md's tables follow data/catalog.json."""
    catalog_script = script_module("scripts/catalog.py")
    full = json.loads(catalog_script.CATALOG.read_text(encoding="utf-8"))
    files = catalog_script.outputs_of(full)
    assert files.pop(catalog_script.CATALOG) == catalog_script.CATALOG.read_text(encoding="utf-8")
    stale = [str(p.relative_to(PACK_DIR)) for p, text in files.items() if p.read_text(encoding="utf-8") != text]
    assert stale == []


@pytest.mark.parametrize("name", GENERATED + FLAGSHIPS)
def test_generated_node_runs_with_its_defaults(fal, nodes, name, tmp_path):
    """Every generated node, and every flagship (a curated spec now), sends what fal's schema describes with its
    defaults (and what a user must give) and returns outputs of the kinds it declares."""
    cls = nodes[name]
    inputs = filled_inputs(cls, tmp_path)
    outputs = run_node(cls, **inputs)
    assert fal.rejected == [] and len(fal.submissions) == 1
    submission = fal.submissions[0]
    assert submission.endpoint == cls.ENDPOINT
    payload, spec = submission.payload, CATALOG[cls.ENDPOINT]
    fields = {item["name"]: item for item in spec["inputs"]}
    assert set(payload) <= set(fields) | {"seed"}
    assert ("seed" in payload) == ("seed" in spec) and payload.get("seed", 0) == 0
    for field, item in fields.items():
        if "socket" in item:
            want = item["fal"].get("required")
            assert (field in payload) == bool(want), field
            if want:
                urls = payload[field] if item["kind"].endswith("_list") else [payload[field]]
                assert urls and all(u.startswith("https://") for u in urls), field
                if item["kind"] == "audio_list":
                    assert len(urls) == 2
        elif item["fal"].get("required"):
            assert field in payload
        elif field in NEEDS.get(name, {}):
            assert payload[field] == NEEDS[name][field]
        else:
            assert payload.get(field) == sent_default(item), field
    assert len(outputs) == len(cls.RETURN_TYPES)
    response = json.loads(outputs[-1])
    for value, kind, out in zip(outputs, cls.RETURN_TYPES, cls.RETURN_NAMES):
        if kind == "AUDIO":
            listed = next(o for o in spec["outputs"] if o["name"] == out)["kind"] == "audio_list"
            assert value["waveform"].dtype == torch.float32 and value["waveform"].shape[0] == (2 if listed else 1)
            assert value["waveform"].shape[-1] == 8000 and value["sample_rate"] == 16000
            # Each clip goes into core CreateVideo / SaveVideo as it is.
            clip = {"waveform": value["waveform"][:1], "sample_rate": value["sample_rate"]}
            assert mux_like_create_video(frames(2, 16, 16), 2.0, clip) == (value["waveform"].shape[1], 16000)
        elif kind == "VIDEO":
            assert isinstance(value, FakeVideo) and open(value.get_stream_source(), "rb").read() == tiny_mp4()
        elif out == "srt":
            assert value.startswith("1\n00:00:00,000 --> ")
        elif out != "response_json":
            item = response[out]
            assert value == (item["url"] if isinstance(item, dict) else item)
    assert set(response) == {o["name"] for o in spec["outputs"] if o["kind"] != "srt"}


@pytest.mark.parametrize("name, field, value, rule", [
    ("FalAudioElevenlabsTextToDialogueElevenV3", "inputs", '[{"text": "Hi"}]', "'inputs[0].voice' is required"),
    ("FalAudioElevenlabsTextToDialogueElevenV3", "inputs", '[{"text": "Hi", "voice": 3}]',
     "'inputs[0].voice' must be a string"),
    ("FalAudioElevenlabsTextToDialogueElevenV3", "inputs", "[{", "'inputs' is not valid JSON"),
    ("FalAudioElevenlabsTextToDialogueElevenV3", "stability", "2", "'stability' is 2; it must be 0-1"),
    ("FalAudioElevenlabsTextToDialogueElevenV3", "stability", "loud", "'stability' is 'loud', not a number"),
    ("FalAudioSamAudioSeparate", "reranking_candidates", 9, "'reranking_candidates' is 9; it must be 1-7"),
    ("FalAudioSamAudioSeparate", "acceleration", "turbo", "'acceleration' is 'turbo', which is not one of fast"),
])
def test_bad_input_is_refused_before_paying(fal, nodes, name, field, value, rule, tmp_path):
    cls = nodes[name]
    inputs = {**filled_inputs(cls, tmp_path), field: value}
    with pytest.raises(ValueError) as caught:
        run_node(cls, **inputs)
    assert rule in str(caught.value) and "Nothing was sent to fal." in str(caught.value)
    assert fal.submissions == [] and fal.uploads == []


def test_not_set_values_are_sent_once_set_with_fal_types(fal, nodes, tmp_path):
    cls = nodes["FalAudioElevenlabsTextToDialogueElevenV3"]
    lines = [{"text": "Hello there.", "voice": "Aria"}, {"text": "Hi!", "voice": "Roger"}]
    run_node(cls, **{**filled_inputs(cls, tmp_path), "inputs": json.dumps(lines), "stability": "0.5",
                     "use_speaker_boost": "false", "language_code": "en", "seed": 7})
    assert fal.submissions[0].payload == {"inputs": lines, "stability": 0.5, "use_speaker_boost": False,
                                          "language_code": "en", "seed": 7}
    # A combo of numbers sends the number itself (fal's type), not its text.
    cls = nodes["FalAudioInworldTts"]
    assert cls.INPUT_TYPES()["optional"]["sample_rate_hertz"][1]["default"] == "48000"
    run_node(cls, **{**filled_inputs(cls, tmp_path), "sample_rate_hertz": "16000"})
    assert fal.submissions[-1].payload["sample_rate_hertz"] == 16000 and fal.rejected == []


def test_video_in_is_uploaded_as_its_file_and_video_out_is_the_kept_file(fal, nodes, tmp_path):
    cls = nodes["FalAudioKlingVideoVideoToAudio"]
    inputs = filled_inputs(cls, tmp_path)
    audio, video, response = run_node(cls, **inputs)
    url = fal.submissions[0].payload["video_url"]
    assert fal.file_bytes(url) == open(inputs["video"].get_stream_source(), "rb").read()
    kept = video.get_stream_source()
    assert kept.endswith("_video.mp4") and "/output/fal-audio/" in kept and open(kept, "rb").read() == tiny_mp4()
    assert audio["waveform"].shape == (1, 1, 8000)
    # Re-run: the kept result comes back, nothing is sent or paid again.
    again = run_node(cls, **filled_inputs(cls, tmp_path))
    assert len(fal.submissions) == 1 and again[1].get_stream_source() == kept


def test_two_audio_outputs_and_takes_batch(fal, nodes, tmp_path):
    cls = nodes["FalAudioSamAudioSeparate"]
    residual, target, response = run_node(cls, **{**filled_inputs(cls, tmp_path), "takes": 2})
    assert residual["waveform"].shape[0] == 2 and target["waveform"].shape[0] == 2
    seeded = "seed" in CATALOG[cls.ENDPOINT]
    assert [s.payload["seed"] for s in fal.submissions] == [0, 1] if seeded else len(fal.submissions) == 2
    assert len(json.loads(response)) == 2


def test_price_is_counted_as_the_catalog_says(fal, nodes, comfy, tmp_path):
    cls = nodes["FalAudioElevenlabsTtsTurboV25"]  # $0.05 per 1000 characters of text
    text = "x" * 2000
    run_node(cls, unique_id="7", **{**filled_inputs(cls, tmp_path), "text": text})
    assert any("≈$0.10 · 2,000 characters × $0.05/1000 characters" in t for t in comfy.texts())


def test_unknown_price_is_refused_under_a_daily_limit(fal, nodes, monkeypatch, tmp_path):
    cls = nodes["FalAudioWorkflowUtilitiesAudioCompressor"]  # billed in compute seconds: not estimable
    monkeypatch.setenv("FAL_AUDIO_DAILY_LIMIT_USD", "5")
    with pytest.raises(Exception) as caught:
        run_node(cls, **filled_inputs(cls, tmp_path))
    assert "price" in str(caught.value).lower() and fal.submissions == []


def test_generated_nodes_declare_all_their_inputs_fast(nodes):
    import time

    started = time.perf_counter()
    for cls in nodes.values():
        cls.INPUT_TYPES()
    assert time.perf_counter() - started < 0.3
    changer = nodes["FalAudioElevenlabsVoiceChanger"].INPUT_TYPES()
    assert changer["required"]["audio"][0] == "AUDIO" and changer["optional"]["output_format"][1]["advanced"] is True
    assert changer["optional"]["output_format"][1]["default"] == "mp3_44100_128"


def test_a_retired_generated_node_fails_at_once_naming_its_successor(fal, nodes):
    cls = nodes["FalAudioMinimaxSpeech02Hd"]
    fal.retire(cls.ENDPOINT)
    with pytest.raises(Exception) as caught:
        run_node(cls, **filled_inputs(cls, PACK_DIR))
    assert "404" in str(caught.value) and "fal-ai/minimax/speech-2.8-hd" in str(caught.value)
    assert len(fal.submissions) == 0


def test_price_badges_follow_the_widgets_of_generated_nodes(fal, nodes):
    import asyncio

    routes = pack_module("editor.routes")
    items = [{"id": 1, "type": "FalAudioSoniloV11TextToMusic", "widgets": {"prompt": "calm", "duration": 30}},
             {"id": 2, "type": "FalAudioSoniloV11VideoToMusic", "widgets": {"duration": "20"}},  # a not-set number
             {"id": 3, "type": "FalAudioElevenlabsVoiceChanger", "widgets": {}},
             {"id": 4, "type": "FalAudioMireloAiSfx16TextToAudio", "widgets": {"prompt": "rain"}}]
    status, body = asyncio.run(routes.answer(nodes, json.dumps({"nodes": items}).encode()))
    texts = {key: value["text"] for key, value in body["estimates"].items()}
    assert texts == {"1": "≈$0.075", "2": "≈$0.18", "3": "$0.30/minute of input",
                     "4": "price unknown"}


def test_a_cloned_voice_id_chains_into_minimax_speech(fal, nodes, tmp_path):
    """MiniMax Voice Clone's custom_voice_id (STRING) connected to MiniMax Speech 2.8 HD's custom_voice_id."""
    clone = nodes["FalAudioMinimaxVoiceClone"]
    names = clone.RETURN_NAMES
    outputs = run_node(clone, **filled_inputs(clone, tmp_path))
    voice = outputs[names.index("custom_voice_id")]
    assert voice.startswith("voice_") and json.loads(outputs[-1])["custom_voice_id"] == voice
    speech = nodes["FalAudioMiniMaxSpeech28HD"]
    run_node(speech, **defaults(speech, prompt="Hello from my own voice."), custom_voice_id=voice)
    assert fal.submissions[-1].payload["voice_setting"]["voice_id"] == voice


def test_timed_words_come_out_as_srt_subtitles(fal, nodes, tmp_path):
    cls = nodes["FalAudioElevenlabsSpeechToTextScribeV2"]
    assert cls.RETURN_NAMES == ("language_code", "text", "srt", "response_json")
    words = [{"text": "Hello", "start": 0.0, "end": 0.4, "type": "word", "speaker_id": "speaker_0"},
             {"text": " ", "start": 0.4, "end": 0.5, "type": "spacing"},
             {"text": "there.", "start": 0.5, "end": 0.9, "type": "word", "speaker_id": "speaker_0"},
             {"text": "(laughs)", "start": 1.0, "end": 1.5, "type": "audio_event"},
             {"text": "Hi", "start": 1.2, "end": 1.4, "type": "word", "speaker_id": "speaker_1"},
             *[{"text": f"w{i}", "start": 1.5 + i / 10, "end": 1.55 + i / 10, "type": "word",
                "speaker_id": "speaker_1"} for i in range(8)],
             {"text": "late", "start": 4.0, "end": 4.5, "type": "word", "speaker_id": "speaker_1"}]
    fal.set_handler(cls.ENDPOINT, lambda payload: {"text": "Hello there. Hi", "language_code": "eng",
                                                   "language_probability": 0.9, "words": words})
    language, text, srt, _ = run_node(cls, **filled_inputs(cls, tmp_path))
    assert (language, text) == ("eng", "Hello there. Hi")
    assert srt == ("1\n00:00:00,000 --> 00:00:00,900\nspeaker_0: Hello there.\n\n"
                   "2\n00:00:01,200 --> 00:00:02,150\nspeaker_1: Hi w0 w1 w2 w3 w4 w5 w6\n\n"
                   "3\n00:00:02,200 --> 00:00:02,250\nspeaker_1: w7\n\n"
                   "4\n00:00:04,000 --> 00:00:04,500\nspeaker_1: late\n")


@pytest.mark.parametrize("name", FLAGSHIPS)
def test_a_flagship_declares_what_it_declared_as_a_generated_node(nodes, name):
    """One renderer: a flagship's curated spec and the spec its catalog entry reads as (catalog.spec_of) render the
    same inputs (names, order, types, defaults, ranges, options) and outputs; only tooltips differ, and new
    optional inputs may follow at the end."""
    catalog, spec = pack_module("nodes.catalog"), pack_module("nodes.spec")
    endpoint = nodes[name].ENDPOINT
    generated = spec.node_class(name, catalog.spec_of(endpoint, CATALOG[endpoint]))
    assert issubclass(nodes[name], spec.SpecNode) and (generated.RETURN_TYPES, generated.RETURN_NAMES) == (
        nodes[name].RETURN_TYPES, nodes[name].RETURN_NAMES)

    def shown(cls, section):
        return [(n, d[0], {k: v for k, v in (d[1] if len(d) > 1 else {}).items() if k != "tooltip"})
                for n, d in cls.INPUT_TYPES()[section].items()]

    assert shown(nodes[name], "required") == shown(generated, "required")
    before, now = shown(generated, "optional"), shown(nodes[name], "optional")
    assert now[:len(before) - 1] == before[:-1] and now[-1] == before[-1]  # the fal Client socket stays last
