"""MMAudio v2 text-to-audio: sound (effects, ambience, music) from a prompt."""

from . import widgets as w
from .base import FalAudioNode

SEED_MAX = 65535  # MMAudio v2 takes a 16-bit seed

# MMAudio's settings, shared with its video-to-audio endpoint.
SETTINGS = {
    "negative_prompt": w.text("The negative prompt to generate the audio for.", multiline=True),
    "num_steps": w.integer("The number of steps to generate the audio for (pack limit 4-50).", 25, 4, 50),
    "duration": w.number("The duration of the audio to generate, in seconds (pack limit 1-30 s).", 8.0, 1.0, 30.0),
    "cfg_strength": w.number("The strength of Classifier Free Guidance (pack limit 0-20).", 4.5, 0.0, 20.0),
    "mask_away_clip": w.boolean("Whether to mask away the clip."),
}


class MMAudioTextToAudio(FalAudioNode):
    ENDPOINT = "fal-ai/mmaudio-v2/text-to-audio"
    DISPLAY_NAME = "MMAudio v2 Text to Audio (fal)"
    DESCRIPTION = "Generate sound effects, ambience or music from a text prompt with MMAudio v2."
    REQUIRED_TEXT = ("prompt",)
    SEED_MAX = SEED_MAX
    OUTPUT_SECONDS = "duration"

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The prompt to generate the audio for.", multiline=True),
            **SETTINGS,
        }, seed_max=cls.SEED_MAX)
