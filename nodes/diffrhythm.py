"""DiffRhythm: a full song from time-tagged lyrics plus a reference clip or a style prompt."""

import re

from . import widgets as w
from .base import FalAudioNode

# DiffRhythm's style encoder takes the middle 10 s of the reference (its code refuses a shorter one); the
# longest is a pack limit (only 10 s are used, so a longer upload only costs time).
REFERENCE_SECONDS = (10.0, 600.0)
TIME_TAG = re.compile(r"^\s*\[\d{2}:\d{2}\.\d{2}\]", re.MULTILINE)


class DiffRhythm(FalAudioNode):
    ENDPOINT = "fal-ai/diffrhythm"
    DISPLAY_NAME = "DiffRhythm (fal)"
    DESCRIPTION = "Generate a 95 s or 285 s song from [mm:ss.xx] time-tagged lyrics, styled by a reference clip or prompt."
    SENDS_SEED = False
    REQUIRED_TEXT = ("lyrics",)
    AUDIO_INPUTS = {"reference_audio": "reference_audio_url"}
    INPUT_SECONDS = REFERENCE_SECONDS

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "lyrics": w.text("The prompt to generate the song from: lyrics lines, each starting with a [mm:ss.xx] "
                             "time tag, e.g. [00:10.00]Moonlight spills through broken blinds.", multiline=True),
            "style_prompt": w.text("The style prompt to use for the music generation (needed when no reference "
                                   "audio is connected).", multiline=True),
            "music_duration": w.choice(("95s", "285s"), "95s", "The duration of the music to generate."),
            "cfg_strength": w.number("The CFG strength to use for the music generation (pack limit 1-10).", 4.0, 1.0,
                                     10.0),
            "scheduler": w.choice(("euler", "midpoint", "rk4", "implicit_adams"), "euler",
                                  "The scheduler to use for the music generation."),
            "num_inference_steps": w.integer("The number of inference steps to use for the music generation "
                                             "(pack limit 10-100).", 32, 10, 100),
        }, optional={
            "reference_audio": w.audio("The reference audio to use for the music generation (optional when "
                                       "style_prompt is given), 10-600 s long (DiffRhythm uses its middle 10 s; "
                                       "600 s is a pack limit). A batch makes one song per clip."),
        }, sent_seed=False)

    def billing(self, request, clips):
        length = str(request.get("music_duration", "95s"))  # "95s" or "285s"
        return {"seconds": float(length.rstrip("s")) if length.rstrip("s").isdigit() else None, "characters": None}

    def validate(self, request, clips):
        lines = [line for line in request["lyrics"].splitlines() if line.strip()]
        untagged = [line for line in lines if not TIME_TAG.match(line)]
        self.check(not untagged, "lyrics", "needs a [mm:ss.xx] time tag at the start of every line "
                   f"(first untagged line: {untagged[0][:40]!r})" if untagged else "")
        self.check("reference_audio" in clips or "style_prompt" in request, "style_prompt",
                   "is empty and no reference_audio is connected: give one of them")
