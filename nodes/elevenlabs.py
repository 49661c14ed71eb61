"""ElevenLabs sound effects (MP3)."""

from . import widgets as w
from .base import FalAudioNode

AUTO_DURATION = 0.0
MAX_SECONDS = 22.0


class ElevenLabsSoundEffects(FalAudioNode):
    ENDPOINT = "fal-ai/elevenlabs/sound-effects"
    DISPLAY_NAME = "ElevenLabs Sound Effects (fal)"
    DESCRIPTION = ("Generate a sound effect (MP3) from a description with ElevenLabs (v1). fal's current catalog no "
                   "longer lists this endpoint: it may be retired (then the node says so and names ElevenLabs Sound "
                   "Effects v2, its successor).")
    SUCCESSOR = "ElevenLabs Sound Effects v2 (fal) node"
    SENDS_SEED = False
    REQUIRED_TEXT = ("text",)
    UNSET = {"duration_seconds": AUTO_DURATION}

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "text": w.text("The text describing the sound effect to generate", multiline=True),
            "duration_seconds": w.number("Duration in seconds (0.5-22). 0 = not set: the optimal duration is "
                                         "determined from the prompt.", AUTO_DURATION, 0.0, 22.0, 0.1),
            "prompt_influence": w.number("How closely to follow the prompt (0-1). Higher values mean less "
                                         "variation.", 0.3, 0.0, 1.0, 0.01),
        }, sent_seed=False)

    def billing(self, request, clips):
        # Auto length (not sent): priced at the longest the model makes, settled with what it returns.
        return {"seconds": float(request.get("duration_seconds", MAX_SECONDS)), "characters": None}

    def validate(self, request, clips):
        if "duration_seconds" in request:
            self.check(0.5 <= request["duration_seconds"] <= 22.0, "duration_seconds",
                       "must be between 0.5 and 22 seconds (or 0 to let the model choose)")
        self.check(0.0 <= request["prompt_influence"] <= 1.0, "prompt_influence", "must be between 0 and 1")
