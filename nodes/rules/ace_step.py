"""ACE-Step's edits: billed by the whole song they return; inpaint times inside the clip; outpaint adds something
and stays within the longest song ACE-Step makes (the spec's input_seconds)."""

from ..base import duration


class Edit:
    def added_seconds(self, request: dict) -> float:
        return 0.0

    def billing(self, request, clips):
        clip = clips.get("audio")
        seconds = duration(clip) + self.added_seconds(request) if clip is not None else None
        return {"seconds": seconds, "characters": None}


class Inpaint(Edit):
    def validate(self, request, clips):
        length = duration(clips["audio"])

        def absolute(field):
            anchor, seconds = request[f"{field}_relative_to"], request[field]
            at = seconds if anchor == "start" else length - seconds
            return at, f"points at {at:g} s ({seconds:g} s from the {anchor})"

        start, start_at = absolute("start_time")
        end, end_at = absolute("end_time")
        self.check(0 <= start <= length, "start_time", f"{start_at}, outside the {length:.2f} s clip")
        self.check(end >= 0, "end_time", f"{end_at}, before the start of the {length:.2f} s clip")
        self.check(end <= length + 1e-6, "end_time", f"{end_at}, beyond the end of the {length:.2f} s clip")
        self.check(end > start, "end_time", f"{end_at}, which is not after start_time ({start:g} s)")


class Outpaint(Edit):
    def added_seconds(self, request):
        return float(request.get("extend_before_duration", 0.0)) + float(request.get("extend_after_duration", 0.0))

    def validate(self, request, clips):
        added = request["extend_before_duration"] + request["extend_after_duration"]
        self.check(added > 0, "extend_after_duration", "and extend_before_duration are both 0: nothing to extend")
        total, most = duration(clips["audio"]) + added, self.INPUT_SECONDS[1]
        self.check(total <= most, "extend_after_duration",
                   f"would make the song {total:.1f} s long; ACE-Step makes at most {most:g} s")
