"""Issue 12 case 6 and issue 13 item 3: decoding is bounded while it runs (a tiny FLAC of hours of
silence is refused, naming the limits, for fal results and Load Audio from URL) and streams into one
buffer that gives exactly what decoding every chunk and joining them gives."""

import asyncio
import io
import threading

import numpy as np
import pytest
import torch

from fal_emulator import encode_silent_flac, encode_sine
from support import defaults, pack_module, run_node

LIMITS = "at most 20 minutes and 115,200,000 samples over all channels (decode limits)"


def reference_decode(data: bytes) -> np.ndarray:
    """What decoding gives chunk by chunk, joined at the end (the way it was done before streaming)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.codec_context.sample_rate)
        chunks = [c.to_ndarray() for frame in container.decode(stream) for c in resampler.resample(frame)]
        chunks += [c.to_ndarray() for c in resampler.resample(None)]
    return np.clip(np.concatenate(chunks, axis=1), -1.0, 1.0)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
@pytest.mark.parametrize("channels", [1, 2])
def test_streaming_decode_is_exact(fmt, channels):
    data = encode_sine(seconds=3.3, rate=22050, channels=channels, fmt=fmt, freq=330.0)
    audio = pack_module("media.audio").decode(data)
    wave = audio["waveform"]
    assert audio["sample_rate"] == 22050 and wave.dtype == torch.float32 and wave.is_contiguous()
    assert np.array_equal(wave[0].numpy(), reference_decode(data))


def test_decode_is_exact_when_the_container_states_no_length():
    """FLAC without a total in STREAMINFO: the buffer starts at a guess and grows (and is trimmed) as it goes."""
    data = encode_silent_flac(150.0, rate=8000, channels=2, state_length=False)
    wave = pack_module("media.audio").decode(data)["waveform"]
    assert tuple(wave.shape) == (1, 2, 1_200_000) and wave.is_contiguous() and float(wave.abs().max()) == 0.0


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_the_decode_buffer_grows_and_trims_to_exactly_the_joined_blocks(channels):
    buffer_class = pack_module("media.audio")._PlanarBuffer
    rng = np.random.default_rng(channels)
    blocks = [rng.standard_normal((channels, int(n))).astype(np.float32) for n in rng.integers(1, 5000, 60)]
    for capacity in (1, 777, 40_000, 10**6):  # far too small (many growths), too small, about right, too big
        buffer = buffer_class(channels, capacity)
        for block in blocks:
            buffer.append(block)
        samples = buffer.finish()
        owner = samples if samples.base is None else samples.base
        assert samples.flags["C_CONTIGUOUS"] and owner.nbytes == samples.nbytes  # trimmed: no slack kept
        assert np.array_equal(samples, np.concatenate(blocks, axis=1))


def test_a_fal_result_that_decodes_to_hours_is_refused_naming_the_limits(fal, nodes, comfy):
    node = nodes["FalAudioCassetteMusic"]
    fal.set_handler("cassetteai/music-generator", lambda p: {"audio_file": {"url": fal.silence_bomb(hours=3.0)}})
    with pytest.raises(Exception) as caught:
        run_node(node, **defaults(node, prompt="funk"))
    message = str(caught.value)
    assert message.startswith("cassetteai/music-generator: the returned file was not decoded: the file says it "
                              f"holds 180.0 minutes of audio (2 channels at 44100 Hz), more than the pack decodes: "
                              f"{LIMITS}. It is kept at ")
    assert len(fal.submissions) == 1 and len(list((comfy.output_dir / "fal-audio").glob("*.flac"))) == 1


def test_a_result_that_hides_its_length_is_stopped_while_decoding(fal, nodes):
    node = nodes["FalAudioCassetteMusic"]
    fal.set_handler("cassetteai/music-generator", lambda p: {
        "audio_file": {"url": fal.silence_bomb(hours=2.0, rate=8000, channels=1, state_length=False)}})
    with pytest.raises(Exception) as caught:
        run_node(node, **defaults(node, prompt="funk"))
    assert "was not decoded: decoding passed 20.1 minutes of audio (1 channel at 8000 Hz)" in str(caught.value)
    assert LIMITS in str(caught.value)


def test_a_20_minute_result_is_decoded():
    data = encode_silent_flac(1200.0, rate=8000, channels=1)
    assert pack_module("media.audio").decode(data)["waveform"].shape[-1] == 9_600_000


def test_too_many_samples_is_refused_even_within_the_duration():
    data = encode_silent_flac(60.0, rate=8000, channels=2)
    with pytest.raises(pack_module("media.limits").DecodeLimitExceeded) as caught:
        pack_module("media.audio").decode(data, max_samples=100_000)
    assert "more than the pack decodes: at most 20 minutes and 100,000 samples" in str(caught.value)


def test_load_audio_from_url_refuses_a_decode_bomb(fal, nodes):
    url = fal.silence_bomb(hours=3.0, rate=48000, channels=2)
    assert len(fal._files[url.split("v3.fal.media", 1)[1]].data) < 200_000  # tiny on the wire
    with pytest.raises(Exception) as caught:
        run_node(nodes["FalAudioLoadURL"], url=url, max_megabytes=1.0)
    assert str(caught.value) == (f"Load Audio from URL (fal Audio): {url} was not loaded: the file says it holds "
                                 f"180.0 minutes of audio (2 channels at 48000 Hz), more than the pack decodes: "
                                 f"{LIMITS}.")


def test_load_audio_from_url_decodes_off_the_event_loop(fal, nodes, monkeypatch):
    audio_io = pack_module("media.audio")
    decode, threads = audio_io.decode, []

    def recording(data, *args, **kwargs):
        threads.append(threading.current_thread())
        return decode(data, *args, **kwargs)

    monkeypatch.setattr(audio_io, "decode", recording)
    node = nodes["FalAudioLoadURL"]()

    async def main():
        return threading.current_thread(), await node.load(fal.audio_file(seconds=0.5), 10.0)

    loop_thread, (audio,) = asyncio.run(main())
    assert audio["waveform"].shape[-1] == 22050 and threads and threads[0] is not loop_thread
