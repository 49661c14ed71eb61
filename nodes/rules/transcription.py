"""Wizper's transcript: no file to keep; the text, SRT subtitles from the timed chunks (numbered through a batch)
and the chunks as JSON text."""

import json

from ..base import duration


class Wizper:
    def result_files(self, response):
        return {}  # a transcript: nothing to download

    def outputs(self, results):
        from ...media.subtitles import srt

        texts, subtitles, chunks = [], [], []
        for index, result in enumerate(results):
            response = result.response
            found = [c for c in response.get("chunks") or [] if isinstance(c, dict)]
            clip = result.inputs.get("audio")
            texts.append(str(response.get("text") or "").strip())
            cues = srt(found, duration(clip) if clip is not None else None, first=1 + sum(
                text.count(" --> ") for text in subtitles))  # a batch: one numbering through every clip
            subtitles.append(cues)
            chunks += [{**c, "clip": index + 1} for c in found] if len(results) > 1 else found
        return ("\n\n".join(texts), "\n".join(s for s in subtitles if s),
                json.dumps(chunks, ensure_ascii=False))
