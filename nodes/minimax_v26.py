"""MiniMax Music v2.6: a whole song (vocals, backing, arrangement) from a style prompt and structured lyrics."""

from . import widgets as w
from .base import FalAudioNode

MAX_PROMPT, MAX_LYRICS = 2000, 3500
SAMPLE_RATES = ("16000", "24000", "32000", "44100")
BITRATES = ("32000", "64000", "128000", "256000")
FORMATS = ("mp3", "wav", "pcm")
# MiniMax's music is stereo; its raw pcm format is 16-bit little-endian interleaved samples.
PCM_CHANNELS = 2


class MiniMaxMusicV26(FalAudioNode):
    ENDPOINT = "fal-ai/minimax-music/v2.6"
    DISPLAY_NAME = "MiniMax Music v2.6 (fal)"
    DESCRIPTION = ("Generate a complete song (singing, backing music, arrangement) from a style prompt and lyrics "
                   "with [Verse]/[Chorus]/... structure tags, or an instrumental, with MiniMax Music 2.6.")
    SENDS_SEED = False
    REQUIRED_TEXT = ("prompt",)

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("A description of the music style, mood, genre, and scenario. Max 2000 characters.",
                             multiline=True),
            "lyrics": w.text("Lyrics of the song. Use a new line to separate lines. Supports structure tags: "
                             "[Intro], [Verse], [Pre Chorus], [Chorus], [Bridge], [Outro], [Interlude], [Hook], "
                             "[Break], [Solo], [Inst]. Max 3500 characters. Required when is_instrumental is false "
                             "and lyrics_optimizer is false.", multiline=True),
            "is_instrumental": w.boolean("When true, generates vocal-free instrumental music."),
            "lyrics_optimizer": w.boolean("When true and lyrics is empty, auto-generates lyrics from the prompt."),
            "sample_rate": w.choice(SAMPLE_RATES, "44100", "Sample rate of generated audio (audio_setting)."),
            "bitrate": w.choice(BITRATES, "256000", "Bitrate of generated audio (audio_setting)."),
            "format": w.choice(FORMATS, "mp3", "Audio format (audio_setting). Every format comes out as AUDIO: pcm "
                               "is headerless 16-bit stereo the node decodes at sample_rate."),
        }, sent_seed=False)

    def prepare(self, request):
        request["audio_setting"] = {"sample_rate": int(request.pop("sample_rate")),
                                    "bitrate": int(request.pop("bitrate")), "format": request.pop("format")}
        return request

    def validate(self, request, clips):
        prompt, lyrics = request["prompt"], request.get("lyrics", "")
        self.check(len(prompt) <= MAX_PROMPT, "prompt",
                   f"is {len(prompt)} characters long; MiniMax Music v2.6 takes at most {MAX_PROMPT}")
        self.check(len(lyrics) <= MAX_LYRICS, "lyrics",
                   f"is {len(lyrics)} characters long; MiniMax Music v2.6 takes at most {MAX_LYRICS}")
        self.check(lyrics != "" or request["is_instrumental"] or request["lyrics_optimizer"], "lyrics",
                   "is required unless is_instrumental or lyrics_optimizer is on")

    def raw_layout(self, request):
        from ..media.audio import RawLayout

        setting = request["audio_setting"]
        return RawLayout("s16le", setting["sample_rate"], PCM_CHANNELS) if setting["format"] == "pcm" else None
