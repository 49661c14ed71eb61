"""MMAudio's video-to-audio: frames (an IMAGE batch, encoded as MP4) or a VIDEO (uploaded as its file), a duration
that matches the picture, and a soundtrack exactly as long as the picture. The picture's length limits are the
duration input's range. Kling's video-to-audio: a video of the length and size fal's docs state."""

import math

MATCH_FRAMES = 0.0  # the duration that means "as long as the picture"


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


def picture_seconds(data: bytes, check, field: str) -> tuple:
    """(seconds, frames per second or None) of a VIDEO's file; refused (naming `field`) when it states no length."""
    stated = video_seconds(data)
    check(stated is not None, field, "states no length (no readable picture stream): save it as an MP4 first, e.g. "
                                     "with Save Video, and load that")
    return stated


class VideoToAudio:
    def billing(self, request, clips):
        # 0 = match the frames: known only in a run, where requests() puts the picture's length in.
        seconds = request.get("duration")
        return {"seconds": float(seconds) if seconds else None, "characters": None}

    def requests(self, inputs: dict) -> list:
        from ...jobs.job import Upload  # the runner is imported on first run, not at start-up

        inputs = dict(inputs)
        images, video = inputs.pop("images", None), inputs.pop("video", None)
        fps = inputs.pop("frame_rate", self.item("frame_rate")["default"])
        self._check_declared(self.item("frame_rate"), fps)  # read here, not sent: checked as SpecNode checks inputs
        least, most = self.item("duration")["min"], self.item("duration")["max"]
        self.check((images is None) != (video is None), "images",
                   "and 'video' are both connected: connect only one of them" if video is not None
                   else "is not connected: connect video frames (an IMAGE batch) to 'images' or a VIDEO to 'video'")
        # Encoded or saved once for every take; uploaded by the job runner only when a request is really sent.
        if video is None:
            upload, seconds, length, field = self._frames(images, fps)
        else:
            upload, seconds, length, field = self._video(video)
        self.check(seconds <= most + 1e-9, field,
                   f"{length}; MMAudio takes at most {most:g} s of video (pack limit)"
                   + ("" if video is not None else f". Send at most {math.floor(most * fps + 1e-9)} frames at "
                                                   "this rate, e.g. split the batch"))
        self.check(seconds >= least - 1e-9, field, f"{length}; MMAudio needs at least {least:g} s of video (pack limit)")
        duration = float(inputs.get("duration", MATCH_FRAMES))
        if duration == MATCH_FRAMES:
            inputs["duration"] = round(seconds, 3)
        else:
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
        from ...media.video import check_frames, encode_mp4, frames_seconds

        images = check_frames(images, self.DISPLAY_NAME)
        fps = float(fps)
        count = images.shape[0]
        seconds = frames_seconds(count, fps)
        return ((encode_mp4(images, fps), "video/mp4", "frames.mp4"), seconds,
                f"has {count} frames, {seconds:.2f} s at {fps:g} fps", "images")

    def _video(self, video) -> tuple:
        from ...media.video import video_file

        data, content_type, extension = video_file(video, self.DISPLAY_NAME, "video")
        seconds, fps = picture_seconds(data, self.check, "video")
        rate = f" at {fps:g} fps" if fps else ""
        return (data, content_type, f"video.{extension}"), seconds, f"lasts {seconds:.2f} s{rate}", "video"

    def outputs(self, results: list) -> tuple:
        from ...media.video import fit_length

        (audio,) = super().outputs(results)
        return (fit_length(audio, self.seconds),)


class VideoLimits:
    """A VIDEO socket's file within the model's limits (the spec's `video_seconds` and `video_megabytes`), checked
    once it is saved, before anything is uploaded or paid."""

    def _upload(self, item, value):
        upload = super()._upload(item, value)
        if item["kind"] != "video":
            return upload
        megabytes, (least, most) = len(upload.data) / 1e6, self.SPEC["video_seconds"]
        self.check(megabytes <= self.SPEC["video_megabytes"], item["name"],
                   f"is a {megabytes:.0f} MB file; {self.DISPLAY_NAME[:-6]} takes at most "
                   f"{self.SPEC['video_megabytes']:g} MB")
        seconds, _ = picture_seconds(upload.data, self.check, item["name"])
        self.check(least - 1e-6 <= seconds <= most + 1e-6, item["name"],
                   f"lasts {seconds:.2f} s; {self.DISPLAY_NAME[:-6]} takes videos of {least:g}-{most:g} s")
        return upload
