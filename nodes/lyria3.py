"""Google Lyria 3 (fal-ai/lyria3): a 30 s song with vocals and lyrics from a prompt, optionally inspired by an image."""

from . import widgets as w
from .base import FalAudioNode


class Lyria3(FalAudioNode):
    ENDPOINT = "fal-ai/lyria3"
    DISPLAY_NAME = "Lyria 3 (fal)"
    DESCRIPTION = ("Generate a 30 s music clip (MP3, 44.1 kHz) with vocals and lyrics with Google's Lyria 3, from a "
                   "prompt and optionally an image whose mood it matches. Also outputs the lyrics it sang.")
    RETURN_TYPES = ("AUDIO", "STRING")
    RETURN_NAMES = ("audio", "lyrics")
    SENDS_SEED = False
    REQUIRED_TEXT = ("prompt",)
    IMAGE_INPUTS = {"image": "image_url"}
    OUTPUT_SECONDS = 30.0

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The text prompt describing the music you want to generate. Include genre, mood, "
                             "instrumentation, tempo, and vocal style for best results. Lyria 3 supports vocals, "
                             "lyrics, and multi-language generation.", multiline=True),
        }, {
            "image": ("IMAGE", {"tooltip": "Optional image to use as inspiration for music generation (uploaded as "
                                           "PNG, sent as image_url). The model will create music that matches the "
                                           "mood and theme of the image. One image, not a batch."}),
        }, sent_seed=False)

    def outputs(self, results):
        # The lyrics fal reports for the first take ("" for an instrumental or when it sends none).
        return super().outputs(results) + (str(results[0].response.get("lyrics") or ""),)
