"""The decode limits every decoder of the pack keeps (audio.py's PyAV and raw paths, wav.py, wavstream.py),
and the errors a decode raises."""

# Bounds on decoded audio (a few KB of FLAC can claim hours of silence: gigabytes once decoded). The
# longest result a fal audio model returns today is ElevenLabs Music's 10 minutes; these allow twice that.
MAX_DECODE_SECONDS = 1200.0
# Samples over all channels: 20 minutes of 48 kHz stereo (~460 MB as float32).
MAX_DECODE_SAMPLES = int(MAX_DECODE_SECONDS) * 48000 * 2


class DecodeError(Exception):
    pass


class DecodeLimitExceeded(DecodeError):
    """The audio is longer (or has more samples) than the decode limits allow."""


def too_long(frames: int, rate: int, channels: int, max_seconds: float, max_samples: int,
              what: str) -> DecodeLimitExceeded:
    seconds = frames / rate
    length = f"{seconds / 60:.1f} minutes" if seconds >= 120 else f"{seconds:.1f} s"
    return DecodeLimitExceeded(
        f"{what} {length} of audio ({channels} channel{'s' if channels != 1 else ''} at {rate} Hz), more than "
        f"the pack decodes: at most {max_seconds / 60:g} minutes and {max_samples:,} samples over all channels "
        "(decode limits)")
