"""The emulator refuses what fal would: every submit is checked against the endpoint's contract
(tests/contracts.json, from fal's generated types and API docs), answering 422 with fal's
`detail` list; and a retired endpoint answers 404 on submit."""

import httpx
import pytest

import fal_contracts
from support import CANARY_KEY

# Endpoints the pack calls, and those fal's current catalog (2026-08) lists.
PACK_ENDPOINTS = [
    "fal-ai/lyria2", "fal-ai/ace-step", "fal-ai/ace-step/prompt-to-audio", "fal-ai/ace-step/audio-inpaint",
    "fal-ai/ace-step/audio-outpaint", "fal-ai/ace-step/audio-to-audio", "cassetteai/music-generator",
    "cassetteai/sound-effects-generator", "fal-ai/diffrhythm", "fal-ai/elevenlabs/sound-effects", "fal-ai/yue",
    "fal-ai/mmaudio-v2", "fal-ai/mmaudio-v2/text-to-audio", "fal-ai/minimax-music"]
CATALOG_ENDPOINTS = [
    "fal-ai/elevenlabs/sound-effects/v2", "fal-ai/minimax-music/v2.6", "fal-ai/stable-audio-25/text-to-audio",
    "fal-ai/stable-audio-25/audio-to-audio", "fal-ai/stable-audio-25/inpaint", "fal-ai/elevenlabs/music",
    "fal-ai/lyria3", "fal-ai/demucs", "fal-ai/elevenlabs/audio-isolation", "fal-ai/elevenlabs/tts/eleven-v3",
    "fal-ai/minimax/speech-2.8-hd", "fal-ai/kokoro/american-english", "fal-ai/wizper",
    "fal-ai/elevenlabs/speech-to-text/scribe-v2", "fal-ai/kling-video/video-to-audio"]
URL = "https://v3.fal.media/files/x/in.wav"


def submit(endpoint, payload):
    with httpx.Client() as client:
        return client.post(f"https://queue.fal.run/{endpoint}", json=payload,
                           headers={"Authorization": f"Key {CANARY_KEY}"})


def detail(response):
    assert response.status_code == 422, response.text
    return [(item["loc"], item["type"], item["msg"]) for item in response.json()["detail"]]


@pytest.mark.parametrize("endpoint", PACK_ENDPOINTS + CATALOG_ENDPOINTS)
def test_every_endpoint_has_a_contract(endpoint):
    contract = fal_contracts.contract(endpoint)
    assert contract is not None and contract["input"] and contract["output"]
    for spec in contract["input"].values():
        assert spec["type"] in ("string", "number", "integer", "boolean", "enum", "file", "array", "object")


def test_a_valid_request_is_accepted_and_runs(fal):
    response = submit("fal-ai/stable-audio-25/inpaint", {"prompt": "lofi", "audio_url": URL, "mask_start": 1.5,
                                                         "mask_end": 4, "seconds_total": 8, "seed": 3})
    assert response.status_code == 200 and "request_id" in response.json()
    assert len(fal.submissions) == 1 and fal.rejected == []


def test_unknown_field_is_refused(fal):
    response = submit("fal-ai/lyria3", {"prompt": "x", "negative_prompt": "drums"})
    assert detail(response) == [(["body", "negative_prompt"], "extra_forbidden", "Extra inputs are not permitted")]
    # Refused whole: nothing ran, nothing billed.
    assert fal.submissions == [] and len(fal.rejected) == 1


def test_missing_required_field_is_refused(fal):
    assert detail(submit("fal-ai/stable-audio-25/audio-to-audio", {"prompt": "x"})) == [
        (["body", "audio_url"], "missing", "Field required")]


@pytest.mark.parametrize("endpoint,payload,loc,kind,msg", [
    ("fal-ai/lyria2", {"prompt": 5}, ["prompt"], "string_type", "Input should be a valid string"),
    ("fal-ai/ace-step", {"tags": "x", "duration": "60"}, ["duration"], "float_type", "Input should be a valid number"),
    ("fal-ai/ace-step", {"tags": "x", "number_of_steps": 27.5}, ["number_of_steps"], "int_from_float",
     "Input should be a valid integer, got a number with a fractional part"),
    ("fal-ai/ace-step", {"tags": "x", "seed": True}, ["seed"], "int_type", "Input should be a valid integer"),
    ("fal-ai/elevenlabs/sound-effects/v2", {"text": "x", "loop": "yes"}, ["loop"], "bool_type",
     "Input should be a valid boolean"),
    ("fal-ai/elevenlabs/sound-effects/v2", {"text": "x", "output_format": "wav"}, ["output_format"], "literal_error",
     None),
    ("fal-ai/elevenlabs/sound-effects/v2", {"text": "x", "duration_seconds": 22.5}, ["duration_seconds"],
     "less_than_equal", "Input should be less than or equal to 22"),
    ("fal-ai/elevenlabs/sound-effects", {"text": "x", "duration_seconds": 0.25}, ["duration_seconds"],
     "greater_than_equal", "Input should be greater than or equal to 0.5"),
    ("fal-ai/stable-audio-25/text-to-audio", {"prompt": "x", "seconds_total": 191}, ["seconds_total"],
     "less_than_equal", "Input should be less than or equal to 190"),
    ("fal-ai/minimax-music", {"prompt": "x" * 601, "reference_audio_url": URL}, ["prompt"], "string_too_long",
     "String should have at most 600 characters"),
    ("fal-ai/minimax-music/v2.6", {"prompt": "x", "audio_setting": {"sample_rate": 48000}},
     ["audio_setting", "sample_rate"], "literal_error", "Input should be 16000, 24000, 32000 or 44100"),
    ("fal-ai/minimax-music/v2.6", {"prompt": "x", "audio_setting": {"channels": 2}}, ["audio_setting", "channels"],
     "extra_forbidden", "Extra inputs are not permitted"),
    ("fal-ai/elevenlabs/music", {"prompt": "x", "music_length_ms": 2999}, ["music_length_ms"], "greater_than_equal",
     "Input should be greater than or equal to 3000"),
    ("fal-ai/elevenlabs/music", {"composition_plan": {"positive_global_styles": [], "negative_global_styles": [],
                                                      "sections": [{"section_name": "", "duration_ms": 3000,
                                                                    "lines": [], "positive_local_styles": [],
                                                                    "negative_local_styles": [3]}]}},
     None, None, None),
    ("fal-ai/stable-audio-25/audio-to-audio", {"prompt": "x", "audio_url": "/etc/passwd"}, ["audio_url"],
     "url_parsing", "Input should be a valid URL or data URI"),
    ("fal-ai/diffrhythm", {"lyrics": "x", "music_duration": None}, ["music_duration"], "none_forbidden",
     "Input should not be None"),
])
def test_wrong_type_enum_range_and_length_are_refused(fal, endpoint, payload, loc, kind, msg):
    errors = detail(submit(endpoint, payload))
    if loc is None:  # the nested plan: each bad leaf is named by its full path
        assert [(e[0], e[1]) for e in errors] == [
            (["body", "composition_plan", "sections", 0, "negative_local_styles", 0], "string_type"),
            (["body", "composition_plan", "sections", 0, "section_name"], "string_too_short")]
        return
    ((got_loc, got_kind, got_msg),) = errors
    assert (got_loc, got_kind) == (["body", *loc], kind)
    if msg is None:
        assert got_msg.startswith("Input should be 'mp3_22050_32', ") and got_msg.endswith(" or 'opus_48000_192'")
    else:
        assert got_msg == msg


def test_optional_field_without_default_may_be_null(fal):
    response = submit("fal-ai/elevenlabs/sound-effects/v2", {"text": "x", "duration_seconds": None})
    assert response.status_code == 200


def test_endpoint_ids_are_matched_case_insensitively(fal):
    # fal's catalog spells CassetteAI's owner with capitals; the pack and fal's docs use lower case.
    assert detail(submit("CassetteAI/music-generator", {"prompt": "x"})) == [
        (["body", "duration"], "missing", "Field required")]


def test_endpoints_without_a_contract_take_any_object(fal):
    assert submit("someone/custom-app/v1", {"anything": [1, 2]}).status_code == 200


def test_the_pack_sees_fal_naming_the_field(fal, nodes):
    """What a user reads when fal refuses: the model and the field, nothing paid."""
    from support import defaults, run_node

    cls = nodes["FalAudioLyria2"]
    cls_endpoint = cls.ENDPOINT
    try:
        cls.ENDPOINT = "fal-ai/lyria3"  # lyria3 takes no negative_prompt
        with pytest.raises(Exception) as error:
            run_node(cls, **defaults(cls, prompt="ambient"))
    finally:
        cls.ENDPOINT = cls_endpoint
    assert str(error.value) == ("fal-ai/lyria3 rejected the input: negative_prompt: Extra inputs are not permitted; "
                                "seed: Extra inputs are not permitted")
    assert fal.submissions == []


def test_retired_endpoint_answers_404_on_submit(fal):
    fal.retire("fal-ai/yue")
    response = submit("fal-ai/yue", {"lyrics": "[verse]\na\n[chorus]\nb", "genres": "pop"})
    assert response.status_code == 404 and "not found" in response.json()["detail"]
    assert fal.submissions == []
    # Other endpoints are served as before; reset() brings the endpoint back.
    assert submit("fal-ai/lyria2", {"prompt": "x"}).status_code == 200
    fal.reset()
    assert submit("fal-ai/yue", {"lyrics": "[verse]\na\n[chorus]\nb", "genres": "pop"}).status_code == 200
