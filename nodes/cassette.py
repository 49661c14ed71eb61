"""CassetteAI music and sound effects (WAV, returned as `audio_file`)."""

from . import widgets as w
from .base import FalAudioNode


class _Cassette(FalAudioNode):
    RESULT_FILE = "audio_file"
    SENDS_SEED = False
    REQUIRED_TEXT = ("prompt",)
    OUTPUT_SECONDS = "duration"


class CassetteMusic(_Cassette):
    ENDPOINT = "cassetteai/music-generator"
    DISPLAY_NAME = "CassetteAI Music (fal)"
    DESCRIPTION = "Generate instrumental music from a prompt (key and tempo welcome) with CassetteAI."

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The prompt to generate music from.", multiline=True),
            "duration": w.integer("The duration of the generated music in seconds (pack limit 10-180 s).", 30, 10,
                                  180),
        }, sent_seed=False)


class CassetteSoundEffects(_Cassette):
    ENDPOINT = "cassetteai/sound-effects-generator"
    DISPLAY_NAME = "CassetteAI Sound Effects (fal)"
    DESCRIPTION = "Generate a sound effect from a description with CassetteAI."

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The prompt to generate SFX.", multiline=True),
            "duration": w.integer("The duration of the generated SFX in seconds (pack limit 1-30 s).", 10, 1, 30),
        }, sent_seed=False)
