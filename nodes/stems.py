"""Separation: Demucs stems (one AUDIO per stem) and ElevenLabs voice isolation.

Demucs returns one file per stem; the node keeps every one (result_files) and gives each its
own socket. A stem the model did not return (not asked for, or not made by a 4-stem model)
comes out as silence as long as the input, and the progress text says which.
"""

import re

from . import widgets as w
from .base import FalAudioNode, duration

STEMS = ("vocals", "drums", "bass", "other", "guitar", "piano")
SIX_STEMS = ("htdemucs_6s",)  # the models that also make guitar and piano
DEMUCS_MODELS = ("htdemucs", "htdemucs_ft", "htdemucs_6s", "hdemucs_mmi", "mdx", "mdx_extra", "mdx_q", "mdx_extra_q")
NOT_SET = 0.0
# Pack limits: fal documents none; Demucs needs a few seconds of music, and a long song is a long paid run.
DEMUCS_SECONDS = (1.0, 1800.0)
# ElevenLabs' voice isolator: files up to 1 hour; fal documents no minimum (pack limit 0.5 s).
ISOLATION_SECONDS = (0.5, 3600.0)


def _input_seconds(clips: dict) -> float:
    return sum(duration(clip) for clip in clips.values())


class _Separation(FalAudioNode):
    SENDS_SEED = False
    AUDIO_INPUTS = {"audio": "audio_url"}

    def billing(self, request, clips):
        # Priced by the input clip's length (the output is as long as the input).
        return {"seconds": _input_seconds(clips) or None, "characters": None}


class Demucs(_Separation):
    ENDPOINT = "fal-ai/demucs"
    DISPLAY_NAME = "Demucs Stem Separation (fal)"
    DESCRIPTION = ("Split a song into stems with Demucs: vocals, drums, bass, other (and guitar, piano with "
                   "htdemucs_6s), one AUDIO output each.")
    RETURN_TYPES = ("AUDIO",) * len(STEMS)
    RETURN_NAMES = STEMS
    INPUT_SECONDS = DEMUCS_SECONDS
    UNSET = {"segment_length": NOT_SET}

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(f"The song to separate, {DEMUCS_SECONDS[0]:g}-{DEMUCS_SECONDS[1]:g} s (pack limit). A "
                             "batch is separated clip by clip (one paid request each) and each stem returned as a "
                             "batch."),
            "model": w.choice(DEMUCS_MODELS, "htdemucs_6s", "Demucs model to use for separation. htdemucs_6s makes "
                              "six stems (adds guitar and piano); the others make vocals, drums, bass, other; "
                              "htdemucs_ft is the fine-tuned (slower, cleaner) 4-stem model."),
            "output_format": w.choice(("wav", "mp3"), "mp3", "Output audio format for the separated stems."),
            "shifts": w.integer("Number of random shifts for equivariant stabilization (pack limit 1-20). Higher "
                                "values improve quality but increase processing time.", 1, 1, 20),
            "overlap": w.number("Overlap between segments (0.0 to 1.0). Higher values may improve quality but "
                                "increase processing time.", 0.25, 0.0, 1.0, 0.01),
            "segment_length": w.number("Length in seconds of each segment for processing (minimum 1). Smaller values "
                                       "use less memory but may reduce quality. 0 = not set: model-specific default.",
                                       NOT_SET, 0.0, 600.0, 0.5),
        }, {
            "stems": w.text("Optional: specific stems to extract, separated by commas (vocals, drums, bass, other, "
                            "guitar, piano). Empty: all stems the model makes. Stems not extracted come out silent."),
        }, sent_seed=False)

    def shape(self, request):
        if "stems" in request:
            request["stems"] = [name for name in re.split(r"[\s,]+", request["stems"].strip().lower()) if name]
            if not request["stems"]:
                del request["stems"]  # only separators: all stems, as when empty
        return request

    def validate(self, request, clips):
        model = request["model"]
        available = STEMS if model in SIX_STEMS else STEMS[:4]
        for name in request.get("stems", []):
            self.check(name in STEMS, "stems", f"names {name!r}; the stems are {', '.join(STEMS)}")
            self.check(name in available, "stems", f"asks for {name}, which {model} does not make (only "
                       f"{', '.join(SIX_STEMS)} makes guitar and piano)")
        self.check(len(set(request.get("stems", []))) == len(request.get("stems", [])), "stems", "names a stem twice")
        self.check(1 <= request["shifts"] <= 20, "shifts", "must be between 1 and 20")
        self.check(0.0 <= request["overlap"] <= 1.0, "overlap", "must be between 0 and 1")
        if "segment_length" in request:
            self.check(request["segment_length"] >= 1.0, "segment_length", "must be at least 1 second (or 0: not set)")

    def result_files(self, response):
        # Every stem fal returned; a stem it left out (or sent as null) is simply not there.
        files = {}
        for name in STEMS:
            item = response.get(name)
            url = item.get("url") if isinstance(item, dict) else item
            if isinstance(url, str) and url:
                files[name] = url
        if not files:
            raise ValueError("the response has no stem file")
        return files

    def outputs(self, results):
        from ..media import audio as audio_io

        missing = [name for name in STEMS if any(name not in r.audios for r in results)]
        if missing:
            self.say(f"Not returned by the model, output as silence: {', '.join(missing)}")
        per_stem = []
        for name in STEMS:
            per_stem.append(audio_io.stack([r.audios[name] if name in r.audios else _silence_like(r)
                                            for r in results]))
        return tuple(per_stem)


def _silence_like(result) -> dict:
    """Silence as long as the request's input clip (at its rate, with the returned stems' channels)."""
    import torch

    clip = result.inputs.get("audio")
    stem = next(iter(result.audios.values()), None)
    if clip is None:  # no input recorded: as long as a returned stem
        clip = stem
    channels = stem["waveform"].shape[1] if stem is not None else clip["waveform"].shape[1]
    return {"waveform": torch.zeros((1, channels, clip["waveform"].shape[-1]), dtype=torch.float32),
            "sample_rate": int(clip["sample_rate"])}


class ElevenLabsAudioIsolation(_Separation):
    ENDPOINT = "fal-ai/elevenlabs/audio-isolation"
    DISPLAY_NAME = "ElevenLabs Voice Isolation (fal)"
    DESCRIPTION = "Isolate the voice from background noise, music and ambience with ElevenLabs' voice isolator."
    INPUT_SECONDS = ISOLATION_SECONDS

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(f"The recording to clean, {ISOLATION_SECONDS[0]:g}-{ISOLATION_SECONDS[1]:g} s (ElevenLabs "
                             "takes up to 1 hour). A batch is processed clip by clip (one paid request each)."),
        }, sent_seed=False)
