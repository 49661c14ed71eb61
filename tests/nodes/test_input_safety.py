"""Issue 12, cases 9, 12 and 13: bad input is refused, naming the field, before anything is
uploaded or paid; result files stay inside ComfyUI's output folder; a run's request count is capped.

Every refusal asserts what the user reads and that fal received nothing at all.
"""

import math
import os

import pytest
import torch

from support import defaults, pack_module, run_node

ACE_INPAINT, ACE_A2A, DIFFRHYTHM, MINIMAX = ("FalAudioAceStepInpaint", "FalAudioAceStepAudioToAudio",
                                              "FalAudioDiffRhythm", "FalAudioMiniMaxMusic")
DR_LYRICS = "[00:10.00]Moonlight spills through broken blinds"


def tone(seconds, rate=8000, channels=1, freq=220.0):
    t = torch.arange(int(round(seconds * rate)), dtype=torch.float64) / rate
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * freq * (c + 1) * t) for c in range(channels)])
    return {"waveform": wave.float().unsqueeze(0).contiguous(), "sample_rate": rate}


def client(nodes, **changes):
    values = dict(profile="", queue_timeout=300.0, overall_timeout=3600.0, output_dir="", max_requests_per_run=16)
    values.update(changes)
    return run_node(nodes["FalAudioClient"], **values)[0]


def refusal(fal, call):
    with pytest.raises(ValueError) as caught:
        call()
    assert fal.requests == [] and fal.submissions == [] and fal.uploads == []
    message = str(caught.value)
    assert message.endswith("Nothing was sent to fal."), message
    return message


def run(nodes, name, **values):
    return run_node(nodes[name], **defaults(nodes[name], **values))


def a2a(nodes, audio, **extra):
    return run(nodes, ACE_A2A, tags="jazz", original_tags="lofi", audio=audio, **extra)


# -- case 9: widget values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,field,value,extra", [
    ("FalAudioAceStep", "guidance_scale", math.nan, {"tags": "lofi"}),
    ("FalAudioAceStep", "guidance_interval", math.inf, {"tags": "lofi"}),
    ("FalAudioDiffRhythm", "cfg_strength", math.nan, {"lyrics": DR_LYRICS, "style_prompt": "pop"}),
    ("FalAudioMMAudioTextToAudio", "cfg_strength", -math.inf, {"prompt": "rain"}),
])
def test_nan_or_inf_in_a_float_widget_is_refused_naming_it(fal, nodes, name, field, value, extra):
    message = refusal(fal, lambda: run(nodes, name, **extra, **{field: value}))
    assert message.startswith(f"{nodes[name].DISPLAY_NAME}: '{field}' is {value!r}, not a finite number; give a "
                              "number between ")


def test_nan_timeout_on_the_fal_client_is_refused(fal, nodes):
    message = refusal(fal, lambda: client(nodes, queue_timeout=math.nan))
    assert message.startswith("fal Client: 'queue_timeout' is nan, not a finite number")


def test_nan_in_load_url_and_spectrogram_widgets_is_refused(fal, nodes):
    message = refusal(fal, lambda: run_node(nodes["FalAudioLoadURL"], url=fal.audio_file(seconds=0.5),
                                            max_megabytes=math.nan))
    assert message.startswith("Load Audio from URL (fal Audio): 'max_megabytes' is nan, not a finite number")
    with pytest.raises(ValueError) as caught:
        run_node(nodes["FalAudioSpectrogram"], audio=tone(1.0), width=64, height=32, colour_map="magma",
                 db_range=math.inf, min_frequency=20.0, background="#000", foreground="#fff")
    assert str(caught.value).startswith("Audio to Spectrogram (fal Audio): 'db_range' is inf, not a finite number")


@pytest.mark.parametrize("name,field,extra", [
    ("FalAudioLyria2", "prompt", {}),
    ("FalAudioLyria2", "negative_prompt", {"prompt": "ambient"}),
    ("FalAudioAceStepAudioToAudio", "original_lyrics", {"tags": "jazz", "original_tags": "lofi"}),
])
def test_a_lone_surrogate_in_text_is_refused_naming_the_field(fal, nodes, name, field, extra):
    values = dict(extra, **{field: "la la \ud800 la"})
    if name == ACE_A2A:
        values["audio"] = tone(2.0)
    message = refusal(fal, lambda: run(nodes, name, **values))
    assert message.startswith(f"{nodes[name].DISPLAY_NAME}: '{field}' contains an invalid character (a lone "
                              "surrogate, U+D800, at position 7)")


def test_valid_non_ascii_text_is_sent_as_is(fal, nodes):
    run(nodes, "FalAudioLyria2", prompt="piano 🎹, café")
    assert fal.submissions[0].payload["prompt"] == "piano 🎹, café"


# -- case 9: input clips ------------------------------------------------------------------------------------------

def _decoded_upload(fal):
    (upload,) = fal.uploads
    return pack_module("media.audio").decode(upload.data)


@pytest.mark.parametrize("dtype,to_pcm", [
    (torch.int16, lambda w: (w * 32767).round().to(torch.int16)),
    (torch.int32, lambda w: (w * 2147483647).round().to(torch.int32)),
    (torch.uint8, lambda w: (w * 127 + 128).round().to(torch.uint8)),
    (torch.float64, lambda w: w.double()),
    (torch.float16, lambda w: w.half()),
])
def test_other_sample_types_are_converted_to_full_scale_float(fal, nodes, dtype, to_pcm):
    clip = tone(2.0, rate=8000, channels=2)
    run_audio = {"waveform": to_pcm(clip["waveform"]), "sample_rate": 8000}
    assert run_audio["waveform"].dtype == dtype
    a2a(nodes, run_audio)
    back = _decoded_upload(fal)
    # What was uploaded is the tone (not clipped to a square wave), within the PCM formats' precision.
    tolerance = {torch.uint8: 1 / 64, torch.float16: 1e-3}.get(dtype, 1e-4)
    assert back["waveform"].shape == clip["waveform"].shape
    assert float((back["waveform"] - clip["waveform"]).abs().max()) < tolerance


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.complex64])
def test_sample_types_that_are_not_audio_are_refused(fal, nodes, dtype):
    wave = tone(2.0)["waveform"]
    wave = wave > 0 if dtype == torch.bool else wave.to(dtype)
    message = refusal(fal, lambda: a2a(nodes, {"waveform": wave, "sample_rate": 8000}))
    assert f"'audio' holds {str(dtype).replace('torch.', '')} samples" in message


@pytest.mark.parametrize("rate,words", [
    (None, "has no usable sample rate (None)"),
    (math.nan, "has an invalid sample rate nan"),
    (44100.5, "has an invalid sample rate 44100.5"),
    (0, "has a sample rate of 0 Hz; it must be 1000-384000 Hz"),
    (-8000, "has a sample rate of -8000 Hz"),
    (10**12, "has a sample rate of 1000000000000 Hz"),
    ("44100", "has no usable sample rate ('44100')"),
])
def test_unusable_sample_rates_are_refused(fal, nodes, rate, words):
    clip = tone(2.0)
    message = refusal(fal, lambda: a2a(nodes, {"waveform": clip["waveform"], "sample_rate": rate}))
    assert message.startswith(f"{nodes[ACE_A2A].DISPLAY_NAME}: 'audio' {words}"), message


def test_a_whole_float_or_tensor_sample_rate_is_accepted(fal, nodes):
    clip = tone(2.0)
    a2a(nodes, {"waveform": clip["waveform"], "sample_rate": torch.tensor(8000)})
    assert _decoded_upload(fal)["sample_rate"] == 8000


def test_a_meta_tensor_is_refused(fal, nodes):
    wave = torch.empty((1, 1, 16000), device="meta")
    message = refusal(fal, lambda: a2a(nodes, {"waveform": wave, "sample_rate": 8000}))
    assert "'audio' is a tensor on the 'meta' device, which holds no samples" in message


def test_every_audio_input_node_declares_its_clip_limits(nodes):
    base = pack_module("nodes.base").FalAudioNode
    with_audio = [cls for cls in nodes.values() if isinstance(cls, type) and issubclass(cls, base) and cls.AUDIO_INPUTS]
    assert {cls.__name__ for cls in with_audio} >= {"FalAudioAceStepInpaint", "FalAudioAceStepOutpaint",
                                                   "FalAudioAceStepAudioToAudio", "FalAudioDiffRhythm",
                                                   "FalAudioMiniMaxMusic"}
    for cls in with_audio:
        low, high = cls.INPUT_SECONDS
        assert 0 < low < high, cls.__name__
        spec = cls.INPUT_TYPES()
        for socket in cls.AUDIO_INPUTS:
            declaration = {**spec["required"], **spec.get("optional", {})}[socket]
            assert f"{high:g} s" in declaration[1]["tooltip"], (cls.__name__, socket)


@pytest.mark.parametrize("name,socket,seconds,rate,words", [
    (ACE_INPAINT, "audio", 1 / 8000, 8000, "is 0.000 s long, too short: this model takes clips of 1-240 s"),
    (ACE_A2A, "audio", 0.5, 8000, "is 0.500 s long, too short: this model takes clips of 1-240 s"),
    (ACE_A2A, "audio", 241.0, 8000, "is 241.0 s long, too long: this model takes clips of 1-240 s; trim it first"),
    (DIFFRHYTHM, "reference_audio", 9.5, 8000, "is 9.5 s long, too short: this model takes clips of 10-600 s"),
    (DIFFRHYTHM, "reference_audio", 7200.0, 1000, "is 7200.0 s long, too long: this model takes clips of 10-600 s"),
    (MINIMAX, "reference_audio", 601.0, 1000, "is 601.0 s long, too long: this model takes clips of 15-600 s"),
])
def test_input_clips_outside_the_model_limits_are_refused_before_encoding(fal, nodes, monkeypatch, name, socket,
                                                                          seconds, rate, words):
    job = pack_module("jobs.job")
    encoded = []
    monkeypatch.setattr(job.Upload, "from_clip", classmethod(lambda cls, *a, **k: encoded.append(a)))
    values = {ACE_INPAINT: dict(tags="lofi", end_time=0.0), ACE_A2A: dict(tags="jazz", original_tags="lofi"),
              DIFFRHYTHM: dict(lyrics=DR_LYRICS), MINIMAX: dict(prompt="la la")}[name]
    clip = {"waveform": torch.zeros((1, 1, max(1, int(round(seconds * rate))))), "sample_rate": rate}
    message = refusal(fal, lambda: run(nodes, name, **values, **{socket: clip}))
    assert message.startswith(f"{nodes[name].DISPLAY_NAME}: '{socket}' {words}"), message
    assert encoded == []


def test_a_batch_of_too_short_clips_is_refused_naming_the_clip(fal, nodes):
    short_batch = {"waveform": torch.cat([tone(0.5)["waveform"]] * 3), "sample_rate": 8000}
    message = refusal(fal, lambda: a2a(nodes, short_batch))
    assert "'audio' is 0.500 s long (clip 1 of 3), too short" in message


# -- case 13: requests per run --------------------------------------------------------------------------------------

def test_a_run_that_would_make_more_than_16_requests_is_refused_saying_how_many(fal, nodes):
    clips = {"waveform": torch.cat([tone(1.5)["waveform"]] * 6), "sample_rate": 8000}
    message = refusal(fal, lambda: a2a(nodes, clips, takes=3))
    assert message == (f"{nodes[ACE_A2A].DISPLAY_NAME}: 'audio' has 6 clips x 3 takes: this run would make 18 paid "
                       "requests, more than the 16 a run may make. Raise 'max_requests_per_run' on a connected fal "
                       "Client node to allow it. Nothing was sent to fal.")
    # The same with a fal Client at its default.
    fal.reset()
    assert "would make 18 paid requests" in refusal(fal, lambda: a2a(nodes, clips, takes=3,
                                                                      fal_client=client(nodes)))


def test_a_lower_cap_counts_takes_alone(fal, nodes):
    message = refusal(fal, lambda: run(nodes, "FalAudioLyria2", prompt="ambient", takes=3,
                                       fal_client=client(nodes, max_requests_per_run=2)))
    assert "'takes' is 3: this run would make 3 paid requests, more than the 2 a run may make" in message


def test_the_fal_client_can_raise_the_cap(fal, nodes):
    clips = {"waveform": torch.cat([tone(1.5, freq=200.0 + 10 * i)["waveform"] for i in range(6)]),
             "sample_rate": 8000}
    (audio, *_) = a2a(nodes, clips, takes=3, fal_client=client(nodes, max_requests_per_run=18))
    assert len(fal.submissions) == 18 and audio["waveform"].shape[0] == 18


def test_exactly_16_requests_need_no_raise(fal, nodes):
    clips = {"waveform": torch.cat([tone(1.5, freq=200.0 + 10 * i)["waveform"] for i in range(2)]),
             "sample_rate": 8000}
    a2a(nodes, clips, takes=8)
    assert len(fal.submissions) == 16


# -- case 12 and case 9: the output folder ----------------------------------------------------------------------------

@pytest.mark.parametrize("output_dir", ["../elsewhere", "/tmp", "~/music", "songs/../../outside", "/"])
def test_output_dir_outside_comfyuis_output_folder_is_refused_at_the_fal_client(fal, nodes, comfy, output_dir):
    message = refusal(fal, lambda: client(nodes, output_dir=output_dir))
    assert message.startswith("fal Client: 'output_dir' ")
    assert f"inside ComfyUI's output folder ({comfy.output_dir})" in message


def test_output_dir_through_a_symlink_that_leaves_the_output_folder_is_refused(fal, nodes, comfy, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    comfy.output_dir.mkdir(parents=True)
    (comfy.output_dir / "link").symlink_to(outside, target_is_directory=True)
    message = refusal(fal, lambda: client(nodes, output_dir="link/songs"))
    assert "it points outside it" in message


@pytest.mark.parametrize("output_dir,where", [("songs/today", "songs/today"), ("fal-audio", "fal-audio"),
                                              ("./a/../b", "b")])
def test_output_dir_inside_the_output_folder_keeps_results_there(fal, nodes, comfy, output_dir, where):
    run(nodes, "FalAudioLyria2", prompt="ambient", fal_client=client(nodes, output_dir=output_dir))
    kept = list((comfy.output_dir / where).glob("fal-ai_lyria2_*.wav"))
    assert len(kept) == 1


def test_an_absolute_output_dir_inside_the_output_folder_is_accepted(fal, nodes, comfy):
    inside = comfy.output_dir / "abs"
    run(nodes, "FalAudioLyria2", prompt="ambient", fal_client=client(nodes, output_dir=str(inside)))
    assert len(list(inside.glob("*.wav"))) == 1


def test_the_operators_output_folder_is_free(fal, nodes, comfy, tmp_path, monkeypatch):
    folder = tmp_path / "operator-chose-this"
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(folder))
    run(nodes, "FalAudioLyria2", prompt="ambient")
    assert len(list(folder.glob("*.wav"))) == 1


def test_an_unusable_output_folder_is_refused_before_paying(fal, nodes, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(blocker / "results"))
    message = refusal(fal, lambda: run(nodes, "FalAudioLyria2", prompt="ambient"))
    assert message.startswith(f"Lyria 2 (fal): results cannot be kept in {blocker / 'results'} "
                              "(FAL_AUDIO_OUTPUT_DIR): ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_dir_is_refused_before_paying(fal, nodes, comfy):
    folder = comfy.output_dir / "ro"
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        message = refusal(fal, lambda: run(nodes, "FalAudioLyria2", prompt="ambient",
                                           fal_client=client(nodes, output_dir="ro")))
        assert "results cannot be kept in" in message and "(the fal Client's 'output_dir')" in message
    finally:
        folder.chmod(0o700)


def test_a_file_where_the_output_dir_should_be_is_refused_before_paying(fal, nodes, comfy):
    comfy.output_dir.mkdir(parents=True)
    (comfy.output_dir / "taken").write_text("a file")
    message = refusal(fal, lambda: run(nodes, "FalAudioLyria2", prompt="ambient",
                                       fal_client=client(nodes, output_dir="taken")))
    assert f"results cannot be kept in {comfy.output_dir / 'taken'} (the fal Client's 'output_dir')" in message
