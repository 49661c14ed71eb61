"""Stable Audio 2.5's rules: audio-to-audio is as long as its input unless told otherwise; the inpaint mask lies in
the clip and within the length asked for."""

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
