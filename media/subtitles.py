"""SRT subtitle text from timed transcript chunks (Whisper's [{"timestamp": [start, end], "text": ...}])."""

from typing import List, Optional


def _stamp(seconds: float) -> str:
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def srt(chunks: List[dict], length: Optional[float] = None, first: int = 1) -> str:
    """Numbered SRT cues (from `first`), one per chunk with text. A chunk without an end (Whisper leaves the last one
    open) ends where the next starts, or at `length` (the clip's), or 2 s after its start."""
    cues = []
    timed = [c for c in chunks if isinstance(c, dict) and str(c.get("text") or "").strip()]
    for index, chunk in enumerate(timed):
        stamp = list(chunk.get("timestamp") or [None, None]) + [None, None]
        start = float(stamp[0] or 0.0)
        end = stamp[1]
        if end is None:
            following = timed[index + 1].get("timestamp") if index + 1 < len(timed) else None
            end = (following[0] if following and following[0] is not None
                   else length if length is not None and length > start else start + 2.0)
        end = max(float(end), start)
        cues.append(f"{first + len(cues)}\n{_stamp(start)} --> {_stamp(end)}\n{str(chunk['text']).strip()}\n")
    return "\n".join(cues)
