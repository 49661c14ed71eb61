"""Issue 6: Audio to Waveform / Audio to Spectrogram: IMAGE out, exact colours, right places, fast."""

import math
import time

import pytest
import torch

from support import defaults, run_node

WAVEFORM = "FalAudioWaveform"
SPECTROGRAM = "FalAudioSpectrogram"
BG, FG = (0x16 / 255, 0x18 / 255, 0x1D / 255), (0x4F / 255, 0xC3 / 255, 0xF7 / 255)  # the default colours


def tone(freq=1000.0, seconds=1.0, rate=44100, channels=2, amplitude=0.5, batch=1):
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    wave = (amplitude * torch.sin(2 * math.pi * freq * t)).float()
    return {"waveform": wave.expand(batch, channels, -1).contiguous(), "sample_rate": rate}


def colours(image):
    return {tuple(round(float(c) * 255) for c in pixel) for pixel in image.reshape(-1, 3).unique(dim=0)}


def spectrogram_row(freq, height, rate=44100, min_frequency=20.0):
    """The row (0 = top) where the log axis puts `freq`."""
    position = math.log(freq / min_frequency) / math.log(rate / 2 / min_frequency)
    return (height - 1) * (1 - position)


@pytest.mark.parametrize("name", [WAVEFORM, SPECTROGRAM])
def test_one_image_per_clip_in_0_to_1(nodes, name):
    audio = tone(batch=3, channels=1)
    audio["waveform"][1] *= 0.1
    (image,) = run_node(nodes[name], **defaults(nodes[name], audio=audio, width=300, height=120))
    assert tuple(image.shape) == (3, 120, 300, 3)
    assert image.dtype == torch.float32 and image.device.type == "cpu" and image.is_contiguous()
    assert image.min() >= 0 and image.max() <= 1
    assert not torch.equal(image[0], image[1])  # each clip drawn on its own
    again = run_node(nodes[name], **defaults(nodes[name], audio=audio, width=300, height=120))[0]
    assert torch.equal(image, again)


def test_waveform_spans_each_columns_min_to_max_in_exact_colours(nodes):
    rate, height = 8000, 101
    wave = torch.zeros(1, 2, rate)
    wave[0, 0, : rate // 2] = torch.tensor([1.0, -1.0]).repeat(rate // 4)  # full scale, left half
    wave[0, 1, rate // 2:] = 0.5  # DC at +0.5 on the other channel, right half
    (image,) = run_node(nodes[WAVEFORM], **defaults(nodes[WAVEFORM], audio={"waveform": wave, "sample_rate": rate},
                                                    width=100, height=height, background="#000", foreground="#FFFFFF"))
    image = image[0]
    assert colours(image) == {(0, 0, 0), (255, 255, 255)}
    drawn = image[..., 0] > 0.5  # [H, W]
    assert drawn[:, :50].all()  # -1..+1: the whole column
    # +0.5 and the silent left channel (0): from row 25 (amplitude 0.5) to row 50 (centre).
    right = drawn[:, 50:]
    assert right[25:51].all() and not right[:25].any() and not right[51:].any()


def test_waveform_of_silence_is_the_centre_line_and_short_clips_fill_the_width(nodes):
    silent = {"waveform": torch.zeros(1, 1, 10), "sample_rate": 44100}  # fewer samples than columns
    (image,) = run_node(nodes[WAVEFORM], **defaults(nodes[WAVEFORM], audio=silent, width=64, height=64))
    assert colours(image) == {tuple(round(c * 255) for c in BG), tuple(round(c * 255) for c in FG)}
    drawn = (image[0] - torch.tensor(BG)).abs().sum(-1) > 0.01
    assert drawn[31:33].all() and drawn.sum() == 2 * 64


def test_spectrogram_puts_a_tone_on_its_log_frequency_row(nodes):
    height = 200
    for freq in (110.0, 1000.0, 8000.0):
        (image,) = run_node(nodes[SPECTROGRAM], **defaults(nodes[SPECTROGRAM], audio=tone(freq, seconds=2.0),
                                                           width=64, height=height, colour_map="gray"))
        brightness = image[0].mean(dim=(1, 2))  # per row
        assert abs(int(brightness.argmax()) - spectrogram_row(freq, height)) <= 2, freq
        # A pure tone: rows an octave away are near the quietest colour.
        octave = round(spectrogram_row(freq * 2, height))
        assert brightness[octave] < 0.2 * brightness.max()


def test_spectrogram_levels_and_colour_maps(nodes):
    cls = nodes[SPECTROGRAM]
    silence = {"waveform": torch.zeros(1, 2, 44100), "sample_rate": 44100}
    (image,) = run_node(cls, **defaults(cls, audio=silence, width=32, height=32, colour_map="background to foreground",
                                        background="#102030", foreground="#ffffff"))
    assert colours(image) == {(0x10, 0x20, 0x30)}  # silence: the quietest colour everywhere
    (loud,) = run_node(cls, **defaults(cls, audio=tone(1000.0, amplitude=1.0), width=32, height=100,
                                       colour_map="background to foreground", background="#000000",
                                       foreground="#ffffff"))
    assert loud.max() > 0.95  # a full-scale sine reaches 0 dB: the loudest colour
    magma = run_node(cls, **defaults(cls, audio=tone(), width=32, height=32))[0]
    viridis = run_node(cls, **defaults(cls, audio=tone(), width=32, height=32, colour_map="viridis"))[0]
    assert not torch.equal(magma, viridis)


@pytest.mark.parametrize("name, overrides, field, rule", [
    (WAVEFORM, {"foreground": "blue"}, "foreground", "must be a hex colour like #1e90ff"),
    (SPECTROGRAM, {"background": "#12345"}, "background", "must be a hex colour like #1e90ff"),
    (SPECTROGRAM, {"min_frequency": 1000.0}, "min_frequency", "below half the sample rate (1000 Hz)"),
])
def test_bad_settings_name_the_node_and_field(nodes, name, overrides, field, rule):
    audio = tone(rate=2000)
    with pytest.raises(ValueError) as caught:
        run_node(nodes[name], **defaults(nodes[name], audio=audio, **overrides))
    assert str(caught.value).startswith(f"{nodes[name].DISPLAY_NAME}: '{field}' ") and rule in str(caught.value)


def test_a_five_minute_stereo_track_is_drawn_quickly(nodes):
    """Generous bound (the budget is well under 1 s on a desktop); the point is that the cost
    does not grow with a per-sample Python loop or a full-resolution STFT."""
    rate = 44100
    audio = {"waveform": (torch.rand(1, 2, 300 * rate, generator=torch.Generator().manual_seed(1)) - 0.5),
             "sample_rate": rate}
    for name in (WAVEFORM, SPECTROGRAM):
        run_node(nodes[name], **defaults(nodes[name], audio=tone(), width=64, height=64))  # warm up
        started = time.perf_counter()
        run_node(nodes[name], **defaults(nodes[name], audio=audio))
        assert time.perf_counter() - started < 4.0, name
