"""Lyrics rules of song models: DiffRhythm's time-tagged lines and its style source, YuE's two sections."""

import re

TIME_TAG = re.compile(r"^\s*\[\d{2}:\d{2}\.\d{2}\]", re.MULTILINE)


class DiffRhythm:
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


class YuE:
    def validate(self, request, clips):
        sections = {s.lower() for s in re.findall(r"\[(verse|chorus)\]", request["lyrics"], re.IGNORECASE)}
        missing = {"verse", "chorus"} - sections
        self.check(not missing, "lyrics", "needs both a [verse] and a [chorus] section "
                   f"(missing: {', '.join(sorted('[' + m + ']' for m in missing))})" if missing else "")
