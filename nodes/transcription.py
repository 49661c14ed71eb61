"""Transcription: Wizper (Whisper v3 large on fal), AUDIO in, text out.

A text-only result: the node keeps no file (result_files() is empty); its outputs are the
transcript, SRT subtitles built from the returned chunks, and the chunks as JSON text.
"""

import json

from . import widgets as w
from .base import FalAudioNode, duration

AUTO = "auto"  # sent as null: Whisper detects the language
WHISPER_LANGUAGES = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy", "da", "de", "el", "en",
    "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw", "he", "hi", "hr", "ht", "hu", "hy", "id", "is",
    "it", "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn",
    "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk",
    "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl", "tr", "tt", "uk", "ur", "uz",
    "vi", "yi", "yo", "zh")
# Pack limits: fal documents none for Wizper; Whisper needs some sound, and a long file is a long paid run.
MIN_SECONDS, MAX_SECONDS = 0.1, 4 * 3600.0


class Wizper(FalAudioNode):
    ENDPOINT = "fal-ai/wizper"
    DISPLAY_NAME = "Wizper Transcribe (fal)"
    DESCRIPTION = ("Speech to text with Wizper (Whisper v3 large): the transcript, SRT subtitles and the timed "
                   "chunks as JSON. Translate turns any language into English.")
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("text", "srt", "chunks")
    SENDS_SEED = False
    AUDIO_INPUTS = {"audio": "audio_url"}
    INPUT_SECONDS = (MIN_SECONDS, MAX_SECONDS)
    NULL = {"language": AUTO}

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(f"The speech (or song) to transcribe, {MIN_SECONDS:g}-{MAX_SECONDS:g} s (pack limit). "
                             "Wire a vocals stem for lyrics. A batch is transcribed clip by clip (one paid request "
                             "each), the texts joined."),
            "task": w.choice(("transcribe", "translate"), "transcribe", "Task to perform on the audio file. Either "
                             "transcribe or translate (into English)."),
            "language": w.choice((AUTO, *WHISPER_LANGUAGES), "en", "Language of the audio file. If translate is "
                                 "selected as the task, the audio will be translated to English, regardless of the "
                                 "language selected. 'auto': detected (this increases the inference time)."),
            "merge_chunks": w.boolean("Whether to merge consecutive chunks. When enabled, chunks are merged if their "
                                      "combined duration does not exceed max_segment_len.", True),
            "max_segment_len": w.number("Maximum speech segment duration in seconds before splitting (pack limit "
                                        "1-60 s).", 29.0, 1.0, 60.0, 1.0),
        }, sent_seed=False)

    def billing(self, request, clips):
        # Billed by compute time, which follows the clip's length.
        return {"seconds": sum(duration(clip) for clip in clips.values()) or None, "characters": None}

    def validate(self, request, clips):
        self.check(1.0 <= request["max_segment_len"] <= 60.0, "max_segment_len", "must be between 1 and 60 seconds")

    def result_files(self, response):
        return {}  # a transcript: nothing to download

    def outputs(self, results):
        from ..media.subtitles import srt

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
