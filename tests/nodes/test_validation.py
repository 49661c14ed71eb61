"""Issue 3: every input rule stops the node before anything is paid.

Each case asserts what the user reads (the node, the field and the rule) and that fal
received nothing at all: no upload, no submit, no token request.
"""

import math

import pytest
import torch

from support import curated, defaults, run_node

DR_LYRICS = "[00:10.00]Moonlight spills through broken blinds\n[00:13.20]Your shadow dances on the dashboard shrine"
YUE_LYRICS = "[verse]\nStaring at the sunset\n[chorus]\nEvery road you take"


def tone(seconds, rate=8000, channels=1):
    t = torch.arange(int(round(seconds * rate)), dtype=torch.float32) / rate
    return {"waveform": torch.stack([0.5 * torch.sin(2 * math.pi * 220 * (c + 1) * t) for c in range(channels)])
            .unsqueeze(0), "sample_rate": rate}


# A valid run of every model node: its widget defaults plus what the user must give.
VALID = {
    "FalAudioLyria2": lambda: {"prompt": "ambient"},
    "FalAudioAceStep": lambda: {"tags": "lofi"},
    "FalAudioAceStepPromptToAudio": lambda: {"prompt": "a lofi song"},
    "FalAudioAceStepInpaint": lambda: {"tags": "lofi", "start_time": 0.5, "end_time": 1.5, "audio": tone(2.0)},
    "FalAudioAceStepOutpaint": lambda: {"tags": "lofi", "audio": tone(2.0)},
    "FalAudioAceStepAudioToAudio": lambda: {"tags": "jazz", "original_tags": "lofi", "audio": tone(2.0)},
    "FalAudioCassetteMusic": lambda: {"prompt": "funk"},
    "FalAudioCassetteSoundEffects": lambda: {"prompt": "thunder"},
    "FalAudioDiffRhythm": lambda: {"lyrics": DR_LYRICS, "style_prompt": "pop"},
    "FalAudioElevenLabsSoundEffects": lambda: {"text": "door creak"},
    "FalAudioYuE": lambda: {"lyrics": YUE_LYRICS, "genres": "pop"},
    "FalAudioMMAudioTextToAudio": lambda: {"prompt": "rain"},
    "FalAudioMiniMaxMusic": lambda: {"prompt": "la la la", "reference_audio": tone(16.0)},
}

# Text the user must fill in, per node (fal cannot do anything useful without it).
REQUIRED_TEXT = [
    ("FalAudioLyria2", "prompt"),
    ("FalAudioAceStep", "tags"),
    ("FalAudioAceStepPromptToAudio", "prompt"),
    ("FalAudioAceStepInpaint", "tags"),
    ("FalAudioAceStepOutpaint", "tags"),
    ("FalAudioAceStepAudioToAudio", "tags"),
    ("FalAudioAceStepAudioToAudio", "original_tags"),
    ("FalAudioCassetteMusic", "prompt"),
    ("FalAudioCassetteSoundEffects", "prompt"),
    ("FalAudioDiffRhythm", "lyrics"),
    ("FalAudioElevenLabsSoundEffects", "text"),
    ("FalAudioYuE", "lyrics"),
    ("FalAudioYuE", "genres"),
    ("FalAudioMMAudioTextToAudio", "prompt"),
    ("FalAudioMiniMaxMusic", "prompt"),
]

AUDIO_SOCKETS = [
    ("FalAudioAceStepInpaint", "audio"),
    ("FalAudioAceStepOutpaint", "audio"),
    ("FalAudioAceStepAudioToAudio", "audio"),
    ("FalAudioDiffRhythm", "reference_audio"),
    ("FalAudioMiniMaxMusic", "reference_audio"),
]


def inputs(nodes, name, **changes):
    values = VALID[name]()
    values.update(changes)
    return defaults(nodes[name], **values)


def refused(fal, nodes, name, field, *rule_words, **changes):
    """Run the node with a change that breaks a rule; return the message after checking it."""
    with pytest.raises(ValueError) as caught:
        run_node(nodes[name], **inputs(nodes, name, **changes))
    message = str(caught.value)
    assert message.startswith(f"{nodes[name].DISPLAY_NAME}: '{field}' "), message
    for words in rule_words:
        assert words in message, message
    assert message.endswith("Nothing was sent to fal.")
    assert fal.requests == [] and fal.submissions == [] and fal.uploads == []
    return message


def accepted(fal, nodes, name, **changes):
    run_node(nodes[name], **inputs(nodes, name, **changes))
    assert len(fal.submissions) == 1
    return fal.submissions[0].payload


def test_every_model_node_has_a_valid_baseline(nodes):
    assert set(VALID) <= curated(nodes)


@pytest.mark.parametrize("empty", ["", "  \n\t "])
@pytest.mark.parametrize("name,field", REQUIRED_TEXT)
def test_empty_required_text(fal, nodes, name, field, empty):
    refused(fal, nodes, name, field, "is required and is empty", **{field: empty})


def test_minimax_lyrics_over_600_characters(fal, nodes):
    message = refused(fal, nodes, "FalAudioMiniMaxMusic", "prompt", "601 characters", "at most 600",
                      prompt="la " * 200 + "x")
    assert "la la" not in message  # the lyrics themselves are not echoed back


def test_minimax_lyrics_of_exactly_600_characters_are_sent(fal, nodes):
    assert len(accepted(fal, nodes, "FalAudioMiniMaxMusic", prompt="x" * 600)["prompt"]) == 600


@pytest.mark.parametrize("seconds,words", [(14.0, "clips of 15-600 s"), (15.0, "longer than 15 s")])
def test_minimax_reference_not_longer_than_15_seconds(fal, nodes, seconds, words):
    refused(fal, nodes, "FalAudioMiniMaxMusic", "reference_audio", f"is {seconds:.1f} s long",
            words, reference_audio=tone(seconds))


@pytest.mark.parametrize("seconds", [0.4, 0.01, 22.5, 30.0])
def test_elevenlabs_duration_outside_half_to_22_seconds(fal, nodes, seconds):
    refused(fal, nodes, "FalAudioElevenLabsSoundEffects", "duration_seconds", "it must be 0.5-22 (or 0: not set)",
            duration_seconds=seconds)


@pytest.mark.parametrize("seconds,sent", [(0.0, None), (0.5, 0.5), (22.0, 22.0)])
def test_elevenlabs_duration_zero_is_unset_and_the_limits_are_allowed(fal, nodes, seconds, sent):
    payload = accepted(fal, nodes, "FalAudioElevenLabsSoundEffects", duration_seconds=seconds)
    assert payload.get("duration_seconds") == sent and ("duration_seconds" in payload) == (sent is not None)


@pytest.mark.parametrize("influence", [-0.1, 1.01])
def test_elevenlabs_prompt_influence_outside_0_to_1(fal, nodes, influence):
    refused(fal, nodes, "FalAudioElevenLabsSoundEffects", "prompt_influence", "it must be 0-1",
            prompt_influence=influence)


@pytest.mark.parametrize("lyrics,first_untagged", [
    ("Moonlight spills through broken blinds\nYour shadow dances", "Moonlight spills"),
    ("[00:10.00]Moonlight spills\nYour shadow dances on the dashboard", "Your shadow dances"),
    ("[0:10.00]Moonlight spills", "[0:10.00]Moonlight"),
    ("[verse]\n[00:10.00]Moonlight", "[verse]"),
])
def test_diffrhythm_lyrics_need_time_tags(fal, nodes, lyrics, first_untagged):
    refused(fal, nodes, "FalAudioDiffRhythm", "lyrics", "[mm:ss.xx] time tag", first_untagged, lyrics=lyrics)


def test_diffrhythm_needs_a_reference_or_a_style_prompt(fal, nodes):
    refused(fal, nodes, "FalAudioDiffRhythm", "style_prompt", "no reference_audio is connected", style_prompt="")


def test_diffrhythm_with_a_reference_needs_no_style_prompt(fal, nodes):
    payload = accepted(fal, nodes, "FalAudioDiffRhythm", style_prompt="", reference_audio=tone(10.0))
    assert "style_prompt" not in payload and payload["reference_audio_url"] == fal.uploads[0].url


@pytest.mark.parametrize("lyrics,missing", [
    ("[verse]\nStaring at the sunset\n[verse]\nagain", "[chorus]"),
    ("[chorus]\nEvery road you take", "[verse]"),
    ("Staring at the sunset", "[chorus], [verse]"),
])
def test_yue_lyrics_need_verse_and_chorus(fal, nodes, lyrics, missing):
    refused(fal, nodes, "FalAudioYuE", "lyrics", "needs both a [verse] and a [chorus]", f"missing: {missing}",
            lyrics=lyrics)


# The clip is 2 s long in every inpaint case.
@pytest.mark.parametrize("field,changes,words", [
    ("end_time", dict(start_time=1.5, end_time=1.0), "not after start_time"),
    ("end_time", dict(start_time=1.0, end_time=1.0), "not after start_time"),
    ("end_time", dict(start_time=0.5, end_time=3.0),
     "points at 3 s (3 s from the start), beyond the end of the 2.00 s clip"),
    ("start_time", dict(start_time=2.5, end_time=3.0), "outside the 2.00 s clip"),
    ("end_time", dict(start_time_relative_to="end", start_time=0.5, end_time_relative_to="end", end_time=1.0),
     "not after start_time"),
    ("start_time", dict(start_time_relative_to="end", start_time=2.5, end_time=1.0),
     "points at -0.5 s (2.5 s from the end), outside the 2.00 s clip"),
    ("end_time", dict(start_time=0.5, end_time_relative_to="end", end_time=1.8), "not after start_time"),
    ("end_time", dict(start_time=0.5, end_time_relative_to="end", end_time=2.5),
     "points at -0.5 s (2.5 s from the end), before the start of the 2.00 s clip"),
])
def test_inpaint_range_must_lie_inside_the_clip(fal, nodes, field, changes, words):
    refused(fal, nodes, "FalAudioAceStepInpaint", field, words, **changes)


@pytest.mark.parametrize("changes,start,end", [
    (dict(start_time_relative_to="end", start_time=1.5, end_time_relative_to="end", end_time=0.0), 1.5, 0.0),
    (dict(start_time=0.0, end_time_relative_to="end", end_time=0.5), 0.0, 0.5),
])
def test_inpaint_relative_to_end_inside_the_clip_is_sent(fal, nodes, changes, start, end):
    payload = accepted(fal, nodes, "FalAudioAceStepInpaint", **changes)
    assert (payload["start_time"], payload["end_time"]) == (start, end)


def test_outpaint_that_extends_nothing(fal, nodes):
    refused(fal, nodes, "FalAudioAceStepOutpaint", "extend_after_duration", "both 0: nothing to extend",
            extend_before_duration=0.0, extend_after_duration=0.0)


@pytest.mark.parametrize("before,after", [(0.0, 238.5), (200.0, 40.0), (240.0, 0.0)])
def test_outpaint_beyond_240_seconds(fal, nodes, before, after):
    refused(fal, nodes, "FalAudioAceStepOutpaint", "extend_after_duration", "at most 240 s",
            extend_before_duration=before, extend_after_duration=after)


def test_outpaint_up_to_240_seconds_is_sent(fal, nodes):
    assert accepted(fal, nodes, "FalAudioAceStepOutpaint", extend_before_duration=100.0,
                    extend_after_duration=138.0)["extend_after_duration"] == 138.0


def _bad(kind):
    wave = tone(1.0, channels=2)["waveform"].clone()
    if kind == "empty batch":
        wave = wave[:0]
    elif kind == "no channels":
        wave = wave[:, :0]
    elif kind == "zero length":
        wave = wave[..., :0]
    elif kind == "nan":
        wave[0, 1, 100] = float("nan")
    elif kind == "inf":
        wave[0, 0, 7] = float("inf")
    elif kind == "-inf":
        wave[0, 0, -1] = float("-inf")
    elif kind == "3 channels":
        wave = torch.cat([wave, wave[:, :1]], dim=1)
    return {"waveform": wave, "sample_rate": 8000}


BAD_AUDIO = {"empty batch": "is empty (no samples)", "no channels": "is empty (no samples)",
             "zero length": "is empty (no samples)", "nan": "contains NaN or infinite samples",
             "inf": "contains NaN or infinite samples", "-inf": "contains NaN or infinite samples",
             "3 channels": "has 3 channels"}


@pytest.mark.parametrize("kind", sorted(BAD_AUDIO))
@pytest.mark.parametrize("name,socket", AUDIO_SOCKETS)
def test_unusable_audio_input(fal, nodes, name, socket, kind):
    refused(fal, nodes, name, socket, BAD_AUDIO[kind], **{socket: _bad(kind)})


def test_nan_in_the_second_clip_of_a_batch_stops_the_whole_batch(fal, nodes):
    good = tone(2.0)["waveform"]
    bad = good.clone()
    bad[0, 0, 5] = float("nan")
    refused(fal, nodes, "FalAudioAceStepOutpaint", "audio", "contains NaN",
            audio={"waveform": torch.cat([good, bad]), "sample_rate": 8000})



@pytest.mark.parametrize("name", ["FalAudioLyria2", "FalAudioAceStepInpaint", "FalAudioCassetteMusic"])
def test_takes_that_would_run_past_the_largest_seed(fal, nodes, name):
    refused(fal, nodes, name, "seed", "must be 0-2147483647", "with 2 takes, at most 2147483646",
            seed=2**31 - 1, takes=2)


def test_mmaudio_text_to_audio_seed_range_is_16_bit(fal, nodes):
    node = nodes["FalAudioMMAudioTextToAudio"]
    assert node.INPUT_TYPES()["required"]["seed"][1]["max"] == 65535
    with pytest.raises(ValueError) as caught:
        run_node(node, **defaults(node, prompt="rain", seed=65535, takes=2))
    assert "'seed' must be 0-65535" in str(caught.value) and "MMAudio v2 Text to Audio" in str(caught.value)
    assert fal.requests == []


@pytest.mark.parametrize("takes", [0, 9])
def test_takes_out_of_range_is_refused(fal, nodes, takes):
    node = nodes["FalAudioLyria2"]
    with pytest.raises(ValueError) as caught:
        run_node(node, **defaults(node, prompt="x", takes=takes))
    assert "'takes' must be 1-8" in str(caught.value) and fal.requests == []
