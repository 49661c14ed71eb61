"""Stable Audio 2.5 (Stability AI): music and sound from a prompt, audio-to-audio, and inpainting.

Ranges are those of fal's model pages (seconds 1-190, steps 4-8, guidance 1-25); the results
are 44.1 kHz WAV.
"""

from . import widgets as w
from .base import FalAudioNode, duration

MAX_SECONDS = 190
NOT_SET = 0  # total_seconds at 0: not sent, the input's length is used

PROMPT = w.text("The prompt to guide the audio generation.", multiline=True)
DIFFUSION = {
    "num_inference_steps": w.integer("The number of steps to denoise the audio for (4-8).", 8, 4, 8),
    "guidance_scale": w.number("How strictly the diffusion process adheres to the prompt text (higher values make "
                               "your audio closer to your prompt), 1-25.", 1.0, 1.0, 25.0, 0.1),
}
SOURCE = (f"The audio clip to {{}}, 1-{MAX_SECONDS} s long (pack limit: the model makes at most {MAX_SECONDS} s). "
          "A batch is processed clip by clip (one paid request each) and returned as a batch.")


class _StableAudio(FalAudioNode):
    REQUIRED_TEXT = ("prompt",)

    def validate(self, request, clips):
        for socket in self.AUDIO_INPUTS:
            self.check(socket in clips, socket, "is required (connect an AUDIO)")
        self.check(4 <= request["num_inference_steps"] <= 8, "num_inference_steps", "must be 4-8")
        self.check(1.0 <= request["guidance_scale"] <= 25.0, "guidance_scale", "must be 1-25")


class StableAudio25TextToAudio(_StableAudio):
    ENDPOINT = "fal-ai/stable-audio-25/text-to-audio"
    DISPLAY_NAME = "Stable Audio 2.5 Text to Audio (fal)"
    DESCRIPTION = "Generate music or sound effects (up to 190 s, 44.1 kHz) from a prompt with Stable Audio 2.5."
    OUTPUT_SECONDS = "seconds_total"

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The prompt to generate audio from.", multiline=True),
            "seconds_total": w.integer(f"The duration of the audio clip to generate, in seconds (1-{MAX_SECONDS}).",
                                       MAX_SECONDS, 1, MAX_SECONDS),
            **DIFFUSION,
        })

    def validate(self, request, clips):
        super().validate(request, clips)
        self.check(1 <= request["seconds_total"] <= MAX_SECONDS, "seconds_total", f"must be 1-{MAX_SECONDS} s")


class StableAudio25AudioToAudio(_StableAudio):
    ENDPOINT = "fal-ai/stable-audio-25/audio-to-audio"
    DISPLAY_NAME = "Stable Audio 2.5 Audio to Audio (fal)"
    DESCRIPTION = "Transform a clip with a prompt (style transfer, variations) with Stable Audio 2.5."
    AUDIO_INPUTS = {"audio": "audio_url"}
    INPUT_SECONDS = (1.0, float(MAX_SECONDS))
    UNSET = {"total_seconds": NOT_SET}

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(SOURCE.format("transform")),
            "prompt": PROMPT,
            "strength": w.number("Sometimes referred to as denoising, this parameter controls how much influence the "
                                 "audio_url parameter has on the generated audio. A value of 0 would yield audio that "
                                 "is identical to the input. A value of 1 would be as if you passed in no audio at "
                                 "all.", 0.8, 0.0, 1.0, 0.01),
            "total_seconds": w.integer(f"The duration of the audio clip to generate (1-{MAX_SECONDS} s). 0 = not set: "
                                       "it will be set to the duration of the input audio.", NOT_SET, NOT_SET,
                                       MAX_SECONDS),
            **DIFFUSION,
        })

    def validate(self, request, clips):
        super().validate(request, clips)
        self.check(0.0 <= request["strength"] <= 1.0, "strength", "must be 0-1")
        if "total_seconds" in request:
            self.check(1 <= request["total_seconds"] <= MAX_SECONDS, "total_seconds",
                       f"must be 1-{MAX_SECONDS} s (or 0: the input's length)")

    def billing(self, request, clips):
        seconds = request.get("total_seconds") or (duration(clips["audio"]) if "audio" in clips else None)
        return {"seconds": float(seconds) if seconds else None, "characters": None}


class StableAudio25Inpaint(_StableAudio):
    ENDPOINT = "fal-ai/stable-audio-25/inpaint"
    DISPLAY_NAME = "Stable Audio 2.5 Inpaint (fal)"
    DESCRIPTION = ("Regenerate the part of a clip between mask_start and mask_end from a prompt (repair, replace, "
                   "or extend to seconds_total) with Stable Audio 2.5.")
    AUDIO_INPUTS = {"audio": "audio_url"}
    INPUT_SECONDS = (1.0, float(MAX_SECONDS))
    OUTPUT_SECONDS = "seconds_total"

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(SOURCE.format("inpaint")),
            "prompt": PROMPT,
            "mask_start": w.number("The start point of the audio mask, in seconds: where the regenerated part "
                                   "begins. It must lie inside the input clip.", 30.0, 0.0, MAX_SECONDS, 0.1),
            "mask_end": w.number("The end point of the audio mask, in seconds: where the regenerated part ends. "
                                 "After mask_start and at most seconds_total (past the clip's end, the clip is "
                                 "extended).", 190.0, 0.0, MAX_SECONDS, 0.1),
            "seconds_total": w.integer(f"The duration of the audio clip to generate (1-{MAX_SECONDS} s).",
                                       MAX_SECONDS, 1, MAX_SECONDS),
            **DIFFUSION,
        })

    def validate(self, request, clips):
        super().validate(request, clips)
        length = duration(clips["audio"])
        start, end, total = request["mask_start"], request["mask_end"], request["seconds_total"]
        self.check(1 <= total <= MAX_SECONDS, "seconds_total", f"must be 1-{MAX_SECONDS} s")
        self.check(0 <= start < length, "mask_start", f"is {start:g} s, outside the {length:.2f} s clip")
        self.check(end > start, "mask_end", f"is {end:g} s, which is not after mask_start ({start:g} s)")
        self.check(end <= total, "mask_end", f"is {end:g} s, beyond the {total} s the model is asked to make "
                                             "(seconds_total)")
