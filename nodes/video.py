"""MMAudio v2 video-to-audio: a soundtrack for a batch of frames, exactly as long as the frames."""

import math

from . import widgets as w
from .base import FalAudioNode
from .mmaudio import SEED_MAX, SETTINGS

DEFAULT_FPS = 24.0
MATCH_FRAMES = 0.0
MIN_SECONDS = 1.0  # pack limit, as for MMAudio's duration
MAX_SECONDS = 30.0  # pack limit: MMAudio's longest duration


class MMAudioVideoToAudio(FalAudioNode):
    ENDPOINT = "fal-ai/mmaudio-v2"
    DISPLAY_NAME = "MMAudio v2 Video to Audio (fal)"
    DESCRIPTION = ("Generate a soundtrack synchronized to video frames (an IMAGE batch) with MMAudio v2. The audio "
                   "is exactly as long as the frames, ready for Create Video or Video Combine.")
    RESULT_FILE = "video"  # fal returns the video with the sound added; its audio stream is decoded
    OUTPUT_SECONDS = "duration"  # set from the frames when 0 (match the frames)
    SEED_MAX = SEED_MAX

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "images": ("IMAGE", {"tooltip": "The video frames to add sound to (an IMAGE batch), sent as an H.264 MP4. "
                                            f"They must last {MIN_SECONDS:g}-{MAX_SECONDS:g} s at frame_rate "
                                            "(pack limit): longer batches are refused before anything is sent."}),
            "frame_rate": w.number("Frames per second of the images. Use the same value in Create Video / Video "
                                   "Combine so picture and sound stay in sync (pack limit 1-120).",
                                   DEFAULT_FPS, 1.0, 120.0, 0.01),
            "prompt": w.text("The prompt to generate the audio for. Empty: the video alone decides the sound.",
                             multiline=True),
            **SETTINGS,
            "duration": w.number("The duration of the audio to generate, in seconds. 0 = match the frames "
                                 "(frames / frame_rate). Otherwise 1 s up to the frames' length (pack limit "
                                 f"{MAX_SECONDS:g} s); the soundtrack is always returned as long as the frames, "
                                 "padded with silence after a shorter duration.", MATCH_FRAMES, 0.0, MAX_SECONDS),
        }, seed_max=cls.SEED_MAX)

    def billing(self, request, clips):
        # 0 = match the frames: known only in a run, where requests() puts the frames' length in.
        seconds = request.get("duration")
        return {"seconds": float(seconds) if seconds else None, "characters": None}

    def requests(self, inputs: dict) -> list:
        from ..media.video import check_frames, encode_mp4, frames_seconds

        inputs = dict(inputs)
        images = check_frames(inputs.pop("images", None), self.DISPLAY_NAME)
        fps = float(inputs.pop("frame_rate", DEFAULT_FPS))
        self.check(math.isfinite(fps) and fps > 0, "frame_rate", "must be a positive number of frames per second")
        count = images.shape[0]
        seconds = frames_seconds(count, fps)
        length = f"has {count} frames, {seconds:.2f} s at {fps:g} fps"
        self.check(seconds <= MAX_SECONDS + 1e-9, "images",
                   f"{length}; MMAudio takes at most {MAX_SECONDS:g} s of video (pack limit). Send at most "
                   f"{math.floor(MAX_SECONDS * fps + 1e-9)} frames at this rate, e.g. split the batch")
        self.check(seconds >= MIN_SECONDS - 1e-9, "images",
                   f"{length}; MMAudio needs at least {MIN_SECONDS:g} s of video (pack limit)")
        duration = float(inputs.get("duration", MATCH_FRAMES))
        if duration == MATCH_FRAMES:
            inputs["duration"] = round(seconds, 3)
        else:
            self.check(duration >= MIN_SECONDS, "duration",
                       f"is {duration:g} s; use at least {MIN_SECONDS:g} s, or 0 to match the frames")
            self.check(duration <= round(seconds, 3), "duration",
                       f"is {duration:g} s but the frames last {seconds:.2f} s; the soundtrack is cut to the frames' "
                       "length, so ask for at most that (or 0 to match the frames)")
        planned = super().requests(inputs)
        from ..jobs.job import Upload  # the runner is imported on first run, not at start-up

        # Encoded once for every take; uploaded by the job runner only when a request is really sent.
        video = Upload(encode_mp4(images, fps), "video/mp4", "frames.mp4")
        for request, _, _ in planned:
            request["video_url"] = video
            request.setdefault("prompt", "")  # fal requires the field; empty lets the video alone decide
        return planned

    async def generate(self, fal_client=None, unique_id=None, **inputs):
        from ..media.video import check_frames, fit_length, frames_seconds

        (audio,) = await super().generate(fal_client=fal_client, unique_id=unique_id, **inputs)
        images = check_frames(inputs.get("images"), self.DISPLAY_NAME)
        seconds = frames_seconds(images.shape[0], float(inputs.get("frame_rate", DEFAULT_FPS)))
        return (fit_length(audio, seconds),)
