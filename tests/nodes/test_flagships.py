"""Issue 20's flagship nodes (curated specs, data/nodes/*.json): the rules fal's docs state, checked as a user meets
them (the refusal names the model and the field, nothing is uploaded or paid), the shapes they send, and the
prices they count. Their default runs against fal's schema are in test_catalog_generated.py."""

import asyncio
import json

import pytest

from emulator_models import FakeVideo, mp4_with_sound
from support import PACK_DIR, pack_module, run_node
from test_catalog_generated import filled_inputs, tone

CHANGER = "FalAudioElevenlabsVoiceChanger"
DIALOGUE = "FalAudioElevenlabsTextToDialogueElevenV3"
SCRIBE = "FalAudioElevenlabsSpeechToTextScribeV2"
CLONE = "FalAudioMinimaxVoiceClone"
KLING = "FalAudioKlingVideoVideoToAudio"
INPAINT = "FalAudioStableAudio3MediumAudioInpainting"
OUTPAINT = "FalAudioStableAudio3MediumAudioOutpainting"


def refused(fal, cls, inputs: dict) -> str:
    with pytest.raises(ValueError) as caught:
        run_node(cls, **inputs)
    assert fal.submissions == [] and fal.uploads == []
    text = str(caught.value)
    assert text.startswith(cls.DISPLAY_NAME + ": ") and text.endswith("Nothing was sent to fal.")
    return text


@pytest.mark.parametrize("voice", ["Aria", "21m00Tcm4TlvDq8ikWAM"])
def test_voice_changer_sends_a_stock_voice_or_a_voice_id(fal, nodes, tmp_path, voice):
    cls = nodes[CHANGER]
    run_node(cls, **{**filled_inputs(cls, tmp_path), "voice": voice})
    assert fal.submissions[0].payload["voice"] == voice and fal.rejected == []


def test_the_stock_voices_are_the_tts_v3_node_s(nodes):
    rules = pack_module("nodes.rules.elevenlabs")
    assert list(rules.VOICES) == nodes["FalAudioElevenLabsTTSv3"]().item("voice")["options"]


def test_voice_changer_refuses_a_voice_that_is_neither(fal, nodes, tmp_path):
    cls = nodes[CHANGER]
    text = refused(fal, cls, {**filled_inputs(cls, tmp_path), "voice": "Bob the Builder"})
    assert "'voice' is 'Bob the Builder', which is neither a stock voice (Rachel, Aria" in text
    assert "ElevenLabs voice id (20 letters and digits)" in text


def test_voice_changer_estimate_counts_the_input_minutes(fal, nodes, comfy, tmp_path):
    cls = nodes[CHANGER]
    run_node(cls, unique_id="3", **{**filled_inputs(cls, tmp_path), "audio": tone(30.0)})
    assert any("≈$0.15 · 30 s × $0.30/minute" in t for t in comfy.texts()), comfy.texts()


SCRIPT = "Aria: Did you hear that? [whispers] Something is in the attic.\n\nRoger: [sighs] It's the wind.\n" \
         "Go back to sleep.\n21m00Tcm4TlvDq8ikWAM: Fine."


def test_a_dialogue_script_is_sent_as_fals_lines(fal, nodes, tmp_path):
    cls = nodes[DIALOGUE]
    assert list(cls.INPUT_TYPES()["optional"])[-2:] == ["script", "fal_client"]  # new input at the end
    run_node(cls, **{**filled_inputs(cls, tmp_path), "inputs": "", "script": SCRIPT})
    assert fal.submissions[0].payload["inputs"] == [
        {"text": "Did you hear that? [whispers] Something is in the attic.", "voice": "Aria"},
        {"text": "[sighs] It's the wind. Go back to sleep.", "voice": "Roger"},
        {"text": "Fine.", "voice": "21m00Tcm4TlvDq8ikWAM"}]
    assert "script" not in fal.submissions[0].payload and fal.rejected == []


@pytest.mark.parametrize("changes, rule", [
    ({"inputs": "", "script": "Hello, who is there?\nAria: Me."},
     "'script' line 1 names no speaker: write each line as 'Speaker: text'"),
    ({"script": "Aria: Hi."}, "'script' and inputs are both given"),
    ({"inputs": ""}, "'inputs' is empty: give the dialogue as JSON lines here or as 'Speaker: line' text in 'script'"),
    ({"inputs": "[]"}, "'inputs' is empty"),
    ({"inputs": json.dumps([{"text": "Hi", "voice": "Aria"}, {"text": "Yo", "voice": "Narrator"}])},
     "'inputs[1].voice' is 'Narrator', which is neither a stock voice"),
    ({"inputs": "", "script": "Aria: Hi.\nNote: this is not a voice"}, "'inputs[1].voice' is 'Note'"),
    ({"language_code": "eng"}, "'language_code' is 'eng'; use a two-letter ISO 639-1 code"),
    ({"pronunciation_dictionary_locators": json.dumps([{"pronunciation_dictionary_id": f"d{i}"} for i in range(4)])},
     "'pronunciation_dictionary_locators' has more than 3 locators"),
])
def test_a_dialogue_fal_would_refuse_is_refused_before_paying(fal, nodes, tmp_path, changes, rule):
    cls = nodes[DIALOGUE]
    assert rule in refused(fal, cls, {**filled_inputs(cls, tmp_path), **changes})


def test_a_dialogue_is_priced_by_the_characters_of_its_lines(fal, nodes, comfy, tmp_path):
    cls = nodes[DIALOGUE]  # $0.10 per 1000 characters
    run_node(cls, unique_id="4", **{**filled_inputs(cls, tmp_path), "inputs": "",
                                    "script": "Aria: " + "x" * 1500 + "\nRoger: " + "y" * 500})
    assert any("≈$0.20 · 2,000 characters × $0.10/1000 characters" in t for t in comfy.texts()), comfy.texts()


def test_a_dialogue_price_badge_reads_the_script(nodes):
    routes = pack_module("editor.routes")
    items = [{"id": 1, "type": DIALOGUE, "widgets": {"inputs": "", "script": "Aria: " + "x" * 1000}},
             {"id": 2, "type": DIALOGUE, "widgets": {"inputs": json.dumps([{"text": "x" * 3000, "voice": "Aria"}])}}]
    status, body = asyncio.run(routes.answer(nodes, json.dumps({"nodes": items}).encode()))
    assert {k: v["text"] for k, v in body["estimates"].items()} == {"1": "≈$0.10", "2": "≈$0.30"}


def test_scribe_sends_boosted_terms_as_keyterms_and_prices_their_premium(fal, nodes, comfy, tmp_path):
    cls = nodes[SCRIBE]  # $0.008 per minute of the clip, 30 % more with keyterms
    run_node(cls, unique_id="5", **{**filled_inputs(cls, tmp_path), "audio": tone(75.0),
                                    "boosted_terms": '["Kenobi", "lightsaber"]'})
    assert fal.submissions[0].payload["keyterms"] == ["Kenobi", "lightsaber"]
    assert any("≈$0.013 · 97.5 s × $0.008/minute" in t for t in comfy.texts()), comfy.texts()  # 75 s x 1.3


def test_scribe_refuses_a_boosted_term_over_50_characters(fal, nodes, tmp_path):
    cls = nodes[SCRIBE]
    text = refused(fal, cls, {**filled_inputs(cls, tmp_path), "boosted_terms": json.dumps(["ok", "z" * 51])})
    assert "'boosted_terms[1]' has 51 characters; Scribe takes terms of at most 50" in text


def test_a_voice_clone_clip_under_10_s_is_refused(fal, nodes, tmp_path):
    cls = nodes[CLONE]
    text = refused(fal, cls, {**filled_inputs(cls, tmp_path), "audio": tone(6.0)})
    assert "'audio' is 6.0 s long, too short: this model takes clips of 10-1200 s" in text


@pytest.mark.parametrize("seconds, rule", [
    (None, "'video' lasts 0.50 s; Kling Video to Audio takes videos of 3-20 s"),
    (21.0, "'video' lasts 21.00 s; Kling Video to Audio takes videos of 3-20 s")])
def test_kling_refuses_a_video_outside_3_to_20_s_before_uploading(fal, nodes, tmp_path, seconds, rule):
    cls = nodes[KLING]
    inputs = filled_inputs(cls, tmp_path)
    if seconds is None:
        from emulator_models import tiny_mp4

        (tmp_path / "short.mp4").write_bytes(tiny_mp4())
    else:
        (tmp_path / "short.mp4").write_bytes(mp4_with_sound(seconds, rate=16000, channels=1, fps=4, size=16))
    assert rule in refused(fal, cls, {**inputs, "video": FakeVideo(str(tmp_path / "short.mp4"))})


@pytest.mark.parametrize("start, end, rule", [
    (0.0, 0.0, "'mask_end_seconds' is 0 s, which is not after mask_start_seconds (0 s)"),
    (1.5, 2.0, "'mask_start_seconds' is 1.5 s, outside the 1.00 s clip"),
    (0.5, 1.5, "'mask_end_seconds' is 1.5 s, beyond the end of the 1.00 s clip"),
])
def test_inpainting_region_must_lie_in_the_clip(fal, nodes, tmp_path, start, end, rule):
    cls = nodes[INPAINT]
    inputs = {**filled_inputs(cls, tmp_path), "mask_start_seconds": start, "mask_end_seconds": end}
    assert rule in refused(fal, cls, inputs)


@pytest.mark.parametrize("before, after, rule", [
    (0.0, 0.0, "'extend_seconds_after' and extend_seconds_before are both 0: nothing to extend"),
    (200.0, 180.0, "'extend_seconds_after' would make the audio 381.0 s long; Stable Audio 3 makes at most 380 s"),
])
def test_outpainting_adds_something_within_380_s(fal, nodes, tmp_path, before, after, rule):
    cls = nodes[OUTPAINT]
    inputs = {**filled_inputs(cls, tmp_path), "extend_seconds_before": before, "extend_seconds_after": after}
    assert rule in refused(fal, cls, inputs)


def test_outpainting_sends_both_extensions(fal, nodes, tmp_path):
    cls = nodes[OUTPAINT]
    run_node(cls, **{**filled_inputs(cls, tmp_path), "extend_seconds_before": 1.5, "extend_seconds_after": 2.0})
    payload = fal.submissions[0].payload
    assert (payload["extend_seconds_before"], payload["extend_seconds_after"]) == (1.5, 2.0) and fal.rejected == []


def test_flagship_help_pages_are_hand_written_with_the_spec_s_inputs():
    from test_catalog_generated import FLAGSHIPS, SPECS

    for name in FLAGSHIPS:
        page = (PACK_DIR / "web" / "docs" / f"{name}.md").read_text(encoding="utf-8")
        assert "generated from fal's schema" not in page, name
        assert page.startswith(f"# {SPECS[name]['name']}\n") and "## A chain it fits in" in page, name
        for item in SPECS[name]["inputs"]:
            assert f"| `{item['name']}` |" in page, (name, item["name"])
