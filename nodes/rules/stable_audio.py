"""Stable Audio's rules: 2.5's audio-to-audio is as long as its input unless told otherwise; an inpaint mask lies in
the clip (and, for 2.5, within the length asked for); Stable Audio 3's outpainting adds something and stays within
the longest audio it makes."""

from ..base import duration


class AudioToAudio:
    def billing(self, request, clips):
        seconds = request.get("total_seconds") or (duration(clips["audio"]) if "audio" in clips else None)
        return {"seconds": float(seconds) if seconds else None, "characters": None}


class Inpaint:
    def validate(self, request, clips):
        length = duration(clips["audio"])
        start, end, total = request["mask_start"], request["mask_end"], request["seconds_total"]
        self.check(0 <= start < length, "mask_start", f"is {start:g} s, outside the {length:.2f} s clip")
        self.check(end > start, "mask_end", f"is {end:g} s, which is not after mask_start ({start:g} s)")
        self.check(end <= total, "mask_end", f"is {end:g} s, beyond the {total} s the model is asked to make "
                                             "(seconds_total)")


class MaskInClip:
    """Stable Audio 3 inpainting: the region to regenerate (mask_start_seconds-mask_end_seconds) lies in the clip."""

    def validate(self, request, clips):
        length = duration(clips["audio"])
        start, end = request["mask_start_seconds"], request["mask_end_seconds"]
        self.check(start < length, "mask_start_seconds", f"is {start:g} s, outside the {length:.2f} s clip")
        self.check(end > start, "mask_end_seconds",
                   f"is {end:g} s, which is not after mask_start_seconds ({start:g} s)")
        self.check(end <= length + 1e-6, "mask_end_seconds", f"is {end:g} s, beyond the end of the {length:.2f} s clip")


class Extend:
    """Stable Audio 3 outpainting: some seconds added, the result no longer than the longest audio it makes (the
    fields' maximum)."""

    def validate(self, request, clips):
        before, after = request.get("extend_seconds_before", 0), request.get("extend_seconds_after", 0)
        self.check(before + after > 0, "extend_seconds_after",
                   "and extend_seconds_before are both 0: nothing to extend")
        total, most = duration(clips["audio"]) + before + after, self.item("extend_seconds_after")["max"]
        self.check(total <= most + 1e-6, "extend_seconds_after",
                   f"would make the audio {total:.1f} s long; Stable Audio 3 makes at most {most:g} s")
