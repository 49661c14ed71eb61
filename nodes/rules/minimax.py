"""MiniMax's rules: song lyrics unless instrumental, a reference song longer than 15 s, raw PCM music, voice ids
(system or cloned)."""

import re

from ..base import duration

PCM_CHANNELS = 2  # MiniMax's music is stereo; its raw pcm format is 16-bit little-endian interleaved samples
VOICE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_,\-]{0,255}")  # MiniMax voice ids (system or cloned)


class MusicV26:
    def validate(self, request, clips):
        self.check(request.get("lyrics", "") != "" or request["is_instrumental"] or request["lyrics_optimizer"],
                   "lyrics", "is required unless is_instrumental or lyrics_optimizer is on")

    def raw_layout(self, request):
        from ...media.audio import RawLayout

        setting = request["audio_setting"]
        return RawLayout("s16le", setting["sample_rate"], PCM_CHANNELS) if setting["format"] == "pcm" else None


class Music:
    def validate(self, request, clips):
        # fal's docs: "longer than 15 seconds" (so exactly 15 s is refused).
        seconds, least = duration(clips["reference_audio"]), self.INPUT_SECONDS[0]
        self.check(seconds > least, "reference_audio",
                   f"is {seconds:.1f} s long; MiniMax needs a reference longer than {least:g} s")


class Speech:
    def validate(self, request, clips):
        voice = request["voice_setting"]["voice_id"]
        self.check(voice in self.item("voice_id")["options"] or VOICE_ID.fullmatch(voice) is not None,
                   "custom_voice_id", f"is {voice!r}, which is not a MiniMax voice id (letters, digits and _ , -, "
                                      "starting with a letter)")
