"""Google Lyria 2 text-to-music (fal-ai/lyria2): 30 s of 48 kHz WAV."""

from . import widgets as w
from .base import FalAudioNode


class Lyria2(FalAudioNode):
    ENDPOINT = "fal-ai/lyria2"
    DISPLAY_NAME = "Lyria 2 (fal)"
    DESCRIPTION = "Generate 30 s of music (48 kHz WAV) with Google's Lyria 2."
    REQUIRED_TEXT = ("prompt",)
    OUTPUT_SECONDS = 30.0  # Lyria 2 always makes one 30 s clip

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The text prompt describing the music you want to generate: genre, mood, "
                             "instruments, tempo, production.", multiline=True),
            "negative_prompt": w.text("A description of what to exclude from the generated audio.",
                                      default="low quality", multiline=True),
        })
