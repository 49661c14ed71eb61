"""Issue 14: the nodes of fal's current audio catalog send exactly what their contract describes,
refuse bad input before paying, declare their cost facts, and return AUDIO for every output format
(headerless PCM / mu-law / A-law included)."""

import io
import json

import pytest
import torch

from fal_emulator import encode_sine
from support import curated, defaults, pack_module, run_node
from test_catalog_generated import FLAGSHIPS
from test_models import SPECS as MODEL_SPECS
from test_models import (assert_default_payload_sent, assert_specs_cover, assert_two_takes_sent,
                         peak_hz, tone, upload_for, widget_default, widget_names)

SFX_TEXT = "Spacious braam suitable for high-impact movie trailer moments"
MM_PROMPT = "City Pop, 80s retro, groovy synth bass, warm female vocal, 104 BPM"
MM_LYRICS = "[Verse]\nStreetlights flicker, the night breeze sighs\n[Chorus]\nWandering, longing"
MM_DEFAULT_SETTING = {"sample_rate": 44100, "bitrate": 256000, "format": "mp3"}
SA_DEFAULTS = {"num_inference_steps": 8, "guidance_scale": 1.0}
SA_CUSTOM = {"num_inference_steps": 5, "guidance_scale": 7.5}
PLAN = {"positive_global_styles": ["synthwave", "warm"], "negative_global_styles": ["vocals"], "sections": [
    {"section_name": "Intro", "positive_local_styles": ["slow build"], "negative_local_styles": [],
     "duration_ms": 15000, "lines": []},
    {"section_name": "Drop", "positive_local_styles": ["driving bass"], "negative_local_styles": ["piano"],
     "duration_ms": 30000, "lines": ["Neon lights", "all night"]}]}

# Per node: endpoint, the text a user must type, audio sockets (socket -> (field, seconds for the defaults run)),
# the exact default payload (without seed and uploaded URLs), and runs that together change every widget.
SPECS = {
    "FalAudioElevenLabsSoundEffectsV2": dict(
        endpoint="fal-ai/elevenlabs/sound-effects/v2", text={"text": SFX_TEXT},
        default_payload={"text": SFX_TEXT, "loop": False, "prompt_influence": 0.3, "output_format": "mp3_44100_128"},
        custom=[({"text": "glass shattering", "duration_seconds": 4.5, "loop": True, "prompt_influence": 0.75,
                  "output_format": "pcm_16000"},
                 {"text": "glass shattering", "duration_seconds": 4.5, "loop": True, "prompt_influence": 0.75,
                  "output_format": "pcm_16000"})]),
    "FalAudioElevenLabsMusic": dict(
        endpoint="fal-ai/elevenlabs/music", text={"prompt": "an upbeat synthwave track"},
        default_payload={"prompt": "an upbeat synthwave track", "force_instrumental": False,
                         "output_format": "mp3_44100_128"},
        custom=[({"prompt": "lofi beat", "music_length_seconds": 95.5, "force_instrumental": True,
                  "output_format": "ulaw_8000"},
                 {"prompt": "lofi beat", "music_length_ms": 95500, "force_instrumental": True,
                  "output_format": "ulaw_8000"}),
                ({"composition_plan": json.dumps(PLAN), "respect_sections_durations": False,
                  "output_format": "opus_48000_64"},
                 {"composition_plan": PLAN, "respect_sections_durations": False, "output_format": "opus_48000_64"})]),
    "FalAudioMiniMaxMusicV26": dict(
        endpoint="fal-ai/minimax-music/v2.6", text={"prompt": MM_PROMPT},
        default_payload={"prompt": MM_PROMPT, "lyrics": MM_LYRICS, "is_instrumental": False,
                         "lyrics_optimizer": False, "audio_setting": MM_DEFAULT_SETTING},
        default_extra={"lyrics": MM_LYRICS},
        custom=[({"prompt": "ambient drone", "lyrics": "[Inst]", "is_instrumental": True, "lyrics_optimizer": True,
                  "sample_rate": "24000", "bitrate": "128000", "format": "pcm"},
                 {"prompt": "ambient drone", "lyrics": "[Inst]", "is_instrumental": True, "lyrics_optimizer": True,
                  "audio_setting": {"sample_rate": 24000, "bitrate": 128000, "format": "pcm"}})]),
    "FalAudioStableAudio25TextToAudio": dict(
        endpoint="fal-ai/stable-audio-25/text-to-audio", text={"prompt": "A beautiful piano arpeggio"}, seeded=True,
        default_payload={"prompt": "A beautiful piano arpeggio", "seconds_total": 190, **SA_DEFAULTS},
        custom=[({"prompt": "128 BPM tech house drum loop", "seconds_total": 12, **SA_CUSTOM},
                 {"prompt": "128 BPM tech house drum loop", "seconds_total": 12, **SA_CUSTOM})]),
    "FalAudioStableAudio25AudioToAudio": dict(
        endpoint="fal-ai/stable-audio-25/audio-to-audio", text={"prompt": "Post rock, guitars"}, seeded=True,
        sockets={"audio": ("audio_url", 2.0)},
        default_payload={"prompt": "Post rock, guitars", "strength": 0.8, **SA_DEFAULTS},
        custom=[({"prompt": "bossa nova", "strength": 0.45, "total_seconds": 20, **SA_CUSTOM},
                 {"prompt": "bossa nova", "strength": 0.45, "total_seconds": 20, **SA_CUSTOM})]),
    "FalAudioStableAudio25Inpaint": dict(
        endpoint="fal-ai/stable-audio-25/inpaint", text={"prompt": "Lofi hip hop beat"}, seeded=True,
        sockets={"audio": ("audio_url", 31.0)},
        default_payload={"prompt": "Lofi hip hop beat", "mask_start": 30.0, "mask_end": 190.0, "seconds_total": 190,
                         **SA_DEFAULTS},
        custom=[({"prompt": "jazz drums", "mask_start": 0.5, "mask_end": 1.5, "seconds_total": 2, **SA_CUSTOM},
                 {"prompt": "jazz drums", "mask_start": 0.5, "mask_end": 1.5, "seconds_total": 2, **SA_CUSTOM})]),
    "FalAudioLyria3": dict(
        endpoint="fal-ai/lyria3", text={"prompt": "An energetic electronic dance track, 128 BPM"},
        default_payload={"prompt": "An energetic electronic dance track, 128 BPM"},
        custom=[({"prompt": "a slow acoustic ballad"}, {"prompt": "a slow acoustic ballad"})]),
}

# The file a model returns for a request: (format for encode_sine, rate, channels).
EL_RAW = {"pcm": "pcm", "ulaw": "ulaw", "alaw": "alaw"}


def el_file(output_format):
    codec, rate = output_format.split("_")[:2]
    return {"mp3": "mp3", "opus": "opus"}.get(codec, EL_RAW.get(codec)), int(rate), 1


def answer_for(name, payload):
    if name in ("FalAudioElevenLabsSoundEffectsV2", "FalAudioElevenLabsMusic"):
        return el_file(payload["output_format"])
    if name == "FalAudioMiniMaxMusicV26":
        setting = payload["audio_setting"]
        return setting["format"], setting["sample_rate"], 2
    if name == "FalAudioLyria3":
        return "mp3", 44100, 2
    return "wav", 44100, 1  # Stable Audio: WAV, 44.1 kHz mono


def serve(fal, name, seconds=0.5, freq=441.0, extra=None):
    def handler(payload):
        fmt, rate, channels = answer_for(name, payload)
        result = fal.file_result(seconds=seconds, rate=rate, channels=channels, fmt=fmt, freq=freq)
        if "seed" in payload:
            result["seed"] = payload["seed"]
        return {**result, **(extra or {})}

    fal.set_handler(SPECS[name]["endpoint"], handler)


def test_every_catalog_node_has_a_spec(nodes):
    assert_specs_cover(nodes, SPECS)


def test_every_curated_node_sends_its_documented_payload_in_some_test(nodes):
    """Each curated node's payloads are pinned here, in test_models.py, or (speech, separation, transcription,
    video to audio) in test_voice.py / tests/media/test_video.py, the flagships in test_catalog_generated.py and
    test_flagships.py."""
    elsewhere = {"FalAudioDemucs", "FalAudioElevenLabsAudioIsolation", "FalAudioElevenLabsTTSv3", *FLAGSHIPS,
                 "FalAudioKokoroAmericanEnglish", "FalAudioMMAudioVideoToAudio", "FalAudioMiniMaxSpeech28HD",
                 "FalAudioWizper"}
    assert curated(nodes) == set(SPECS) | set(MODEL_SPECS) | elsewhere


@pytest.mark.parametrize("name", sorted(SPECS))
def test_default_payload(fal, nodes, name):
    spec, cls = SPECS[name], nodes[name]
    serve(fal, name)
    clips = {socket: tone(seconds) for socket, (_, seconds) in spec.get("sockets", {}).items()}
    assert all(widget_default(cls, field) == "" for field in spec["text"])
    (audio, *_) = run_node(cls, **defaults(cls, **spec["text"], **spec.get("default_extra", {})), **clips)
    assert_default_payload_sent(fal, spec, clips, seeded=spec.get("seeded"))
    assert audio["waveform"].dtype == torch.float32 and audio["waveform"].shape[0] == 1


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_widget_changed(fal, nodes, name):
    """Every widget set to a non-default value (takes=2 too) reaches fal under the contract's field name."""
    spec, cls = SPECS[name], nodes[name]
    changed = set()
    for custom, want in spec["custom"]:
        fal.reset()
        serve(fal, name)
        inputs = defaults(cls, **custom, seed=1234, takes=2)
        changed |= set(custom) | {"seed", "takes"}
        for field, value in custom.items():
            assert value != widget_default(cls, field), f"{field} is left at its default"
        clips = {socket: tone(2.0, channels=2) for socket in spec.get("sockets", {})}
        (audio, *_) = run_node(cls, **inputs, **clips)
        assert audio["waveform"].shape[0] == 2
        assert_two_takes_sent(fal, want, spec.get("seeded"), spec.get("sockets", {}), clips)
    assert changed == set(widget_names(cls)), "every widget must be changed in this test"


EL_FORMATS = pack_module("nodes").NODE_CLASS_MAPPINGS["FalAudioElevenLabsMusic"]().item("output_format")["options"]


@pytest.mark.parametrize("output_format", EL_FORMATS)
def test_every_elevenlabs_output_format_decodes(fal, nodes, output_format):
    name = "FalAudioElevenLabsSoundEffectsV2"
    serve(fal, name, seconds=0.5, freq=441.0)
    (audio,) = run_node(nodes[name], **defaults(nodes[name], text="a bell", output_format=output_format))
    fmt, rate, _ = el_file(output_format)
    wave = audio["waveform"]
    assert audio["sample_rate"] == rate and wave.dim() == 3 and wave.shape[:2] == (1, 1)
    slack = {"mp3": 2400, "opus": 1500}.get(fmt, 0)  # encoder delay/padding
    assert abs(wave.shape[-1] - rate // 2) <= slack
    assert abs(peak_hz(audio) - 441.0) < 5
    tolerance = 0.03 if fmt in ("ulaw", "alaw") else 0.12
    assert abs(float(wave[0, 0].abs().max()) - 0.5) < tolerance


def test_raw_pcm_is_decoded_sample_for_sample(fal, nodes):
    """pcm_* is 16-bit little-endian mono at the format's rate: the exact samples come out."""
    name = "FalAudioElevenLabsMusic"
    data = encode_sine(0.25, 22050, 1, "pcm", 300.0)
    url = fal.add_file(data, "output.pcm", "application/octet-stream")
    fal.set_handler(SPECS[name]["endpoint"], lambda p: {"audio": {"url": url}})
    (audio,) = run_node(nodes[name], **defaults(nodes[name], prompt="x", output_format="pcm_22050"))
    expected = torch.frombuffer(bytearray(data), dtype=torch.int16).float() / 32768.0
    assert audio["sample_rate"] == 22050
    assert torch.equal(audio["waveform"][0, 0], expected)


def test_a_container_returned_for_a_raw_format_is_still_decoded(fal, nodes):
    """Should fal wrap the samples in WAV after all, the header is read rather than played as noise."""
    name = "FalAudioElevenLabsSoundEffectsV2"
    url = fal.audio_file(seconds=0.5, rate=16000, channels=1, fmt="wav", freq=441.0)
    fal.set_handler(SPECS[name]["endpoint"], lambda p: {"audio": {"url": url}})
    (audio,) = run_node(nodes[name], **defaults(nodes[name], text="x", output_format="pcm_16000"))
    assert tuple(audio["waveform"].shape) == (1, 1, 8000) and abs(peak_hz(audio) - 441.0) < 5


@pytest.mark.parametrize("fmt,channels", [("mp3", 2), ("wav", 2), ("pcm", 2)])
def test_every_minimax_format_decodes(fal, nodes, fmt, channels):
    name = "FalAudioMiniMaxMusicV26"
    serve(fal, name, seconds=0.5, freq=441.0)
    (audio,) = run_node(nodes[name], **defaults(nodes[name], prompt="pop", lyrics="[Verse]\nla", format=fmt,
                                                sample_rate="32000"))
    assert audio["sample_rate"] == 32000 and audio["waveform"].shape[:2] == (1, channels)
    for c in range(channels):
        assert abs(peak_hz(audio, channel=c) - 441.0 * (c + 1)) < 5


def test_reuse_decodes_a_kept_raw_result_the_same_way(fal, nodes):
    name = "FalAudioElevenLabsSoundEffectsV2"
    serve(fal, name)
    inputs = defaults(nodes[name], text="a gong", output_format="alaw_8000")
    (first,) = run_node(nodes[name], **inputs)
    (again,) = run_node(nodes[name], **inputs)
    assert len(fal.submissions) == 1 and torch.equal(first["waveform"], again["waveform"])


def test_lyria3_uploads_the_image_as_png_and_outputs_the_lyrics(fal, nodes):
    import av

    name = "FalAudioLyria3"
    serve(fal, name, extra={"lyrics": "[Verse]\nFeel the rhythm"})
    image = torch.zeros((1, 6, 8, 3))
    image[0, :, :4, 0] = 1.0  # left half red
    image[0, 2:, 4:, 2] = 0.5  # part of the right half mid blue
    audio, lyrics = run_node(nodes[name], **defaults(nodes[name], prompt="a song for this picture"), image=image)
    (submission,) = fal.submissions
    assert set(submission.payload) == {"prompt", "image_url"}
    upload = upload_for(fal, submission.payload["image_url"])
    assert upload.content_type == "image/png" and upload.file_name == "image.png"
    with av.open(io.BytesIO(upload.data)) as container:
        pixels = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert torch.equal(torch.from_numpy(pixels), image[0].mul(255).round().to(torch.uint8))
    assert lyrics == "[Verse]\nFeel the rhythm" and audio["waveform"].shape[:2] == (1, 2)


def test_lyria3_without_lyrics_outputs_an_empty_string(fal, nodes):
    serve(fal, "FalAudioLyria3")
    _, lyrics = run_node(nodes["FalAudioLyria3"], **defaults(nodes["FalAudioLyria3"], prompt="instrumental"))
    assert lyrics == ""


def plan_with(**changes):
    plan = json.loads(json.dumps(PLAN))
    for path, value in changes.items():
        target = plan
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return json.dumps(plan)


REFUSALS = [
    ("FalAudioElevenLabsSoundEffectsV2", dict(text="x", duration_seconds=0.3), "'duration_seconds' is 0.3; it must be 0.5-22 (or 0: not set)"),
    ("FalAudioElevenLabsSoundEffectsV2", dict(text="x", output_format="wav"),
     "'output_format' is 'wav', which is not one of mp3_22050_32"),
    ("FalAudioElevenLabsSoundEffectsV2", dict(text=" "), "'text' is required and is empty"),
    ("FalAudioMiniMaxMusicV26", dict(prompt="pop"),
     "'lyrics' is required unless is_instrumental or lyrics_optimizer is on"),
    ("FalAudioMiniMaxMusicV26", dict(prompt="p" * 2001, lyrics="la"),
     "'prompt' has 2001 characters; MiniMax Music v2.6 takes at most 2000"),
    ("FalAudioMiniMaxMusicV26", dict(prompt="pop", lyrics="l" * 3501),
     "'lyrics' has 3501 characters; MiniMax Music v2.6 takes at most 3500"),
    ("FalAudioMiniMaxMusicV26", dict(prompt="pop", lyrics="la", sample_rate="48000"),
     "'sample_rate' is '48000', which is not one of 16000, 24000"),
    ("FalAudioElevenLabsMusic", dict(), "'prompt' is empty: give a prompt or a composition_plan"),
    ("FalAudioElevenLabsMusic", dict(prompt="x", composition_plan=json.dumps(PLAN)),
     "'composition_plan' and prompt are both given"),
    ("FalAudioElevenLabsMusic", dict(prompt="x", music_length_seconds=2.5), "'music_length_seconds' is 2.5; it must be 3-600 (or 0: not set)"),
    ("FalAudioElevenLabsMusic", dict(composition_plan='{"sections": [\n  {"section_name": "A",}\n]}'),
     "'composition_plan' is not valid JSON: Expecting property name enclosed in double quotes at line 2, column 24 "
     "(character 39)"),
    ("FalAudioElevenLabsMusic", dict(composition_plan="[1, 2]"), "'composition_plan' must be a JSON object"),
    ("FalAudioElevenLabsMusic", dict(composition_plan='{"sections": NaN}'), "NaN is not a JSON value"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(**{"sections.1.duration_ms": 2000})),
     "'composition_plan' is not a valid MusicCompositionPlan: sections[1].duration_ms is 2000; it must be "
     "3000-120000"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(**{"sections.0.section_name": None})),
     "sections[0].section_name is required and missing"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(**{"sections.1.lines.0": "x" * 201})),
     "sections[1].lines[0] has 201 characters; at most 200 are allowed"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(negative_global_styles="vocals")),
     "negative_global_styles must be a JSON array"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(tempo=120)), "tempo is not a field here"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(sections=[])), "'composition_plan' has no sections"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=plan_with(sections=[dict(PLAN["sections"][0],
                                                                               duration_ms=120000)] * 6)),
     "sections add up to 720 s; ElevenLabs Music makes at most 600 s"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=json.dumps(PLAN), music_length_seconds=60.0),
     "'music_length_seconds' works only with a prompt"),
    ("FalAudioElevenLabsMusic", dict(composition_plan=json.dumps(PLAN), force_instrumental=True),
     "'force_instrumental' works only with a prompt"),
    ("FalAudioStableAudio25TextToAudio", dict(prompt="x", num_inference_steps=9), "'num_inference_steps' is 9; it must be 4-8"),
    ("FalAudioStableAudio25TextToAudio", dict(prompt="x", seconds_total=191), "'seconds_total' is 191; it must be 1-190"),
    ("FalAudioStableAudio25AudioToAudio", dict(prompt="x", strength=1.5), "'strength' is 1.5; it must be 0.01-1"),
    ("FalAudioLyria3", dict(prompt=""), "'prompt' is required and is empty"),
]


@pytest.mark.parametrize("name,inputs,message", REFUSALS)
def test_bad_input_is_refused_before_paying(fal, nodes, name, inputs, message):
    cls = nodes[name]
    clips = {socket: tone(4.0) for socket in SPECS[name].get("sockets", {})}
    with pytest.raises(Exception) as error:
        run_node(cls, **defaults(cls, **inputs), **clips)
    assert message in str(error.value) and str(error.value).endswith("Nothing was sent to fal.")
    assert fal.submissions == fal.uploads == fal.rejected == []


@pytest.mark.parametrize("inputs,message", [
    (dict(mask_start=4.5, mask_end=5.0, seconds_total=10), "'mask_start' is 4.5 s, outside the 4.00 s clip"),
    (dict(mask_start=2.0, mask_end=2.0, seconds_total=10), "'mask_end' is 2 s, which is not after mask_start (2 s)"),
    (dict(mask_start=1.0, mask_end=12.0, seconds_total=10),
     "'mask_end' is 12 s, beyond the 10 s the model is asked to make (seconds_total)"),
])
def test_stable_audio_inpaint_mask_is_checked_against_the_clip(fal, nodes, inputs, message):
    cls = nodes["FalAudioStableAudio25Inpaint"]
    with pytest.raises(Exception) as error:
        run_node(cls, **defaults(cls, prompt="x", **inputs), audio=tone(4.0))
    assert message in str(error.value)
    assert fal.submissions == fal.uploads == []


def test_stable_audio_inpaint_may_extend_past_the_clip(fal, nodes):
    name = "FalAudioStableAudio25Inpaint"
    serve(fal, name)
    run_node(nodes[name], **defaults(nodes[name], prompt="x", mask_start=3.0, mask_end=8.0, seconds_total=8),
             audio=tone(4.0))
    assert (fal.submissions[0].payload["mask_end"], fal.submissions[0].payload["seconds_total"]) == (8.0, 8)


@pytest.mark.parametrize("inputs", [dict(is_instrumental=True), dict(lyrics_optimizer=True)])
def test_minimax_v26_lyrics_may_be_left_out(fal, nodes, inputs):
    name = "FalAudioMiniMaxMusicV26"
    serve(fal, name)
    run_node(nodes[name], **defaults(nodes[name], prompt="pop", **inputs))
    assert "lyrics" not in fal.submissions[0].payload


def test_lyria3_refuses_an_image_batch(fal, nodes):
    with pytest.raises(Exception) as error:
        run_node(nodes["FalAudioLyria3"], **defaults(nodes["FalAudioLyria3"], prompt="x"),
                 image=torch.zeros((2, 4, 4, 3)))
    assert "'image' is a batch of 2 images; the model takes one" in str(error.value)
    assert fal.uploads == []


@pytest.mark.parametrize("name,inputs,clip,seconds", [
    ("FalAudioElevenLabsSoundEffectsV2", dict(text="x", duration_seconds=4.5), None, 4.5),
    ("FalAudioElevenLabsSoundEffectsV2", dict(text="x"), None, None),
    ("FalAudioElevenLabsMusic", dict(prompt="x", music_length_seconds=95.5), None, 95.5),
    ("FalAudioElevenLabsMusic", dict(prompt="x"), None, None),
    ("FalAudioElevenLabsMusic", dict(composition_plan=json.dumps(PLAN)), None, 45.0),
    ("FalAudioMiniMaxMusicV26", dict(prompt="x", lyrics="la"), None, None),
    ("FalAudioStableAudio25TextToAudio", dict(prompt="x", seconds_total=42), None, 42.0),
    ("FalAudioStableAudio25AudioToAudio", dict(prompt="x"), 3.0, 3.0),
    ("FalAudioStableAudio25AudioToAudio", dict(prompt="x", total_seconds=20), 3.0, 20.0),
    ("FalAudioStableAudio25Inpaint", dict(prompt="x", mask_start=1.0, mask_end=2.0, seconds_total=60), 3.0, 60.0),
    ("FalAudioLyria3", dict(prompt="x"), None, 30.0),
])
def test_cost_facts(nodes, name, inputs, clip, seconds):
    """What each request is billed by, as the estimate before paying sees it."""
    cls = nodes[name]
    node = cls()
    values = defaults(cls, **inputs)
    if clip is not None:
        values["audio"] = tone(clip)
    (plan,) = node.requests(values)
    assert plan.bill == node.billing(plan[0], plan.clips) == {"seconds": seconds, "characters": None}


def test_a_raw_result_is_bounded_like_any_other(fal, nodes):
    """Raw samples carry no header, so their length is their size: over the decode limits, refused unread."""
    audio_io = pack_module("media.audio")
    layout = audio_io.RawLayout("mulaw", 8000, 1)
    data = bytes(8000 * 10)  # 10 s of mu-law
    assert audio_io.decode_raw(data, layout)["waveform"].shape == (1, 1, 80000)
    with pytest.raises(pack_module("media.limits").DecodeLimitExceeded) as error:
        audio_io.decode_raw(data, layout, max_seconds=9.0)
    assert "10.0 s of audio (1 channel at 8000 Hz)" in str(error.value)

@pytest.mark.parametrize("name", ["FalAudioStableAudio25AudioToAudio", "FalAudioStableAudio25Inpaint"])
@pytest.mark.parametrize("seconds,problem", [(0.5, "too short"), (191.0, "too long")])
def test_stable_audio_input_clip_length_is_checked_before_paying(fal, nodes, name, seconds, problem):
    cls = nodes[name]
    extra = dict(mask_start=0.1, mask_end=0.2, seconds_total=10) if name.endswith("Inpaint") else {}
    with pytest.raises(Exception) as error:
        run_node(cls, **defaults(cls, prompt="x", **extra), audio=tone(seconds, rate=1000))
    length = f"{seconds:.3f} s" if seconds < 1 else f"{seconds:.1f} s"
    assert f"'audio' is {length} long" in str(error.value)
    assert problem in str(error.value) and "clips of 1-190 s" in str(error.value)
    assert fal.submissions == fal.uploads == []


@pytest.mark.parametrize("name,inputs,rate,channels,seconds", [
    ("FalAudioElevenLabsSoundEffectsV2", dict(text="x", duration_seconds=2.5, output_format="ulaw_8000"), 8000, 1,
     2.5),
    ("FalAudioElevenLabsSoundEffectsV2", dict(text="x", output_format="opus_48000_64"), 48000, 1, 3.0),
    ("FalAudioElevenLabsMusic", dict(composition_plan=json.dumps(PLAN), output_format="pcm_24000"), 24000, 1, 45.0),
    ("FalAudioMiniMaxMusicV26", dict(prompt="x", lyrics="la", format="pcm", sample_rate="16000"), 16000, 2, 30.0),
    ("FalAudioStableAudio25TextToAudio", dict(prompt="x", seconds_total=7), 44100, 1, 7.0),
    ("FalAudioStableAudio25AudioToAudio", dict(prompt="x"), 44100, 1, 3.0),
    ("FalAudioLyria3", dict(prompt="x"), 44100, 2, 30.0),
])
def test_the_emulator_answers_in_the_documented_format(fal, nodes, name, inputs, rate, channels, seconds):
    """Without a test handler each endpoint answers like the service: its format, rate, layout and length."""
    cls = nodes[name]
    clips = {socket: tone(3.0) for socket in SPECS[name].get("sockets", {})}
    (audio, *rest) = run_node(cls, **defaults(cls, **inputs), **clips)
    assert audio["sample_rate"] == rate and audio["waveform"].shape[1] == channels
    assert abs(audio["waveform"].shape[-1] / rate - seconds) < 0.1  # opus/mp3 add a little padding
    if name == "FalAudioLyria3":
        assert rest[0].startswith("[Verse]\n")
