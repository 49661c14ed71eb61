"""MMAudio v2 video-to-audio: a soundtrack for a batch of frames or a VIDEO, exactly as long as the picture."""

import math

from . import widgets as w
from .base import FalAudioNode
from .mmaudio import SEED_MAX, SETTINGS

DEFAULT_FPS = 24.0
MATCH_FRAMES = 0.0
MIN_SECONDS = 1.0  # pack limit, as for MMAudio's duration
MAX_SECONDS = 30.0  # pack limit: MMAudio's longest duration


def video_seconds(data: bytes):
    """(seconds, frames per second) of a video file's picture stream, or None where the file states neither."""
    import io

    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                return None
            fps = float(stream.average_rate or 0) or None
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif stream.frames and fps:
                seconds = stream.frames / fps
            else:
                seconds = container.duration / av.time_base if container.duration else None
            return (seconds, fps) if seconds else None
    except av.error.FFmpegError:
        return None


class MMAudioVideoToAudio(FalAudioNode):
    ENDPOINT = "fal-ai/mmaudio-v2"
    DISPLAY_NAME = "MMAudio v2 Video to Audio (fal)"
    DESCRIPTION = ("Generate a soundtrack synchronized to a video with MMAudio v2: video frames (an IMAGE batch) or "
                   "a VIDEO (e.g. from Load Video). The audio is exactly as long as the picture, ready for Create "
                   "Video or Video Combine.")
    RESULT_FILE = "video"  # fal returns the video with the sound added; its audio stream is decoded
    OUTPUT_SECONDS = "duration"  # set from the frames when 0 (match the frames)
    SEED_MAX = SEED_MAX

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "frame_rate": w.number("Frames per second of the images. Use the same value in Create Video / Video "
                                   "Combine so picture and sound stay in sync (pack limit 1-120). Not used with a "
                                   "VIDEO: its own rate and length count.", DEFAULT_FPS, 1.0, 120.0, 0.01),
            "prompt": w.text("The prompt to generate the audio for. Empty: the video alone decides the sound.",
                             multiline=True),
            **SETTINGS,
            "duration": w.number("The duration of the audio to generate, in seconds. 0 = match the frames "
                                 "(frames / frame_rate, or the VIDEO's length). Otherwise 1 s up to the picture's "
                                 f"length (pack limit {MAX_SECONDS:g} s); the soundtrack is always returned as long "
                                 "as the picture, padded with silence after a shorter duration.", MATCH_FRAMES, 0.0,
                                 MAX_SECONDS),
        }, optional={
            "images": ("IMAGE", {"tooltip": "The video frames to add sound to (an IMAGE batch), sent as an H.264 MP4. "
                                            f"They must last {MIN_SECONDS:g}-{MAX_SECONDS:g} s at frame_rate "
                                            "(pack limit): longer batches are refused before anything is sent. "
                                            "Connect either images or video."}),
            "video": ("VIDEO", {"tooltip": "A video to add sound to (e.g. from Load Video), uploaded as its file; "
                                           f"{MIN_SECONDS:g}-{MAX_SECONDS:g} s long (pack limit). Its own frame rate "
                                           "and length count. Connect either images or video."}),
        }, seed_max=cls.SEED_MAX)

    def billing(self, request, clips):
        # 0 = match the frames: known only in a run, where requests() puts the picture's length in.
        seconds = request.get("duration")
        return {"seconds": float(seconds) if seconds else None, "characters": None}

    def requests(self, inputs: dict) -> list:
        from ..jobs.job import Upload  # the runner is imported on first run, not at start-up

        inputs = dict(inputs)
        images, video = inputs.pop("images", None), inputs.pop("video", None)
        fps = inputs.pop("frame_rate", DEFAULT_FPS)
        self.check((images is None) != (video is None), "images",
                   "and 'video' are both connected: connect only one of them" if video is not None
                   else "is not connected: connect video frames (an IMAGE batch) to 'images' or a VIDEO to 'video'")
        # Encoded or saved once for every take; uploaded by the job runner only when a request is really sent.
        if video is None:
            upload, seconds, length, field = self._frames(images, fps)
        else:
            upload, seconds, length, field = self._video(video)
        self.check(seconds <= MAX_SECONDS + 1e-9, field,
                   f"{length}; MMAudio takes at most {MAX_SECONDS:g} s of video (pack limit)"
                   + ("" if video is not None else f". Send at most {math.floor(MAX_SECONDS * fps + 1e-9)} frames at "
                                                   "this rate, e.g. split the batch"))
        self.check(seconds >= MIN_SECONDS - 1e-9, field,
                   f"{length}; MMAudio needs at least {MIN_SECONDS:g} s of video (pack limit)")
        duration = float(inputs.get("duration", MATCH_FRAMES))
        if duration == MATCH_FRAMES:
            inputs["duration"] = round(seconds, 3)
        else:
            self.check(duration >= MIN_SECONDS, "duration",
                       f"is {duration:g} s; use at least {MIN_SECONDS:g} s, or 0 to match the frames")
            self.check(duration <= round(seconds, 3), "duration",
                       f"is {duration:g} s but the {'frames last' if video is None else 'video lasts'} {seconds:.2f} "
                       "s; the soundtrack is cut to the picture's length, so ask for at most that (or 0 to match it)")
        self.seconds = seconds  # this run's copy of the node: outputs() fits the soundtrack to it
        planned = super().requests(inputs)
        upload = Upload(*upload)
        for request, _, _ in planned:
            request["video_url"] = upload
            request.setdefault("prompt", "")  # fal requires the field; empty lets the video alone decide
        return planned

    def _frames(self, images, fps) -> tuple:
        from ..media.video import check_frames, encode_mp4, frames_seconds

        images = check_frames(images, self.DISPLAY_NAME)
        fps = float(fps)
        self.check(math.isfinite(fps) and fps > 0, "frame_rate", "must be a positive number of frames per second")
        count = images.shape[0]
        seconds = frames_seconds(count, fps)
        return ((encode_mp4(images, fps), "video/mp4", "frames.mp4"), seconds,
                f"has {count} frames, {seconds:.2f} s at {fps:g} fps", "images")

    def _video(self, video) -> tuple:
        from ..media.video import video_file

        data, content_type, extension = video_file(video, self.DISPLAY_NAME, "video")
        stated = video_seconds(data)
        self.check(stated is not None, "video", "states no length (no readable picture stream): save it as an "
                                                "MP4 first, e.g. with Save Video, and load that")
        seconds, fps = stated
        rate = f" at {fps:g} fps" if fps else ""
        return (data, content_type, f"video.{extension}"), seconds, f"lasts {seconds:.2f} s{rate}", "video"

    def outputs(self, results: list) -> tuple:
        from ..media.video import fit_length

        (audio,) = super().outputs(results)
        return (fit_length(audio, self.seconds),)
