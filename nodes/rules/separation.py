"""Demucs' stems: which stems a model makes, one output per stem, silence for a stem fal did not return."""

import re

SIX_STEMS = ("htdemucs_6s",)  # the models that also make guitar and piano


class Demucs:
    def stems(self) -> tuple:
        return self.RETURN_NAMES

    def shape(self, request):
        if "stems" in request:
            request["stems"] = [name for name in re.split(r"[\s,]+", request["stems"].strip().lower()) if name]
            if not request["stems"]:
                del request["stems"]  # only separators: all stems, as when empty
        return request

    def validate(self, request, clips):
        model, stems = request["model"], self.stems()
        available = stems if model in SIX_STEMS else stems[:4]
        for name in request.get("stems", []):
            self.check(name in stems, "stems", f"names {name!r}; the stems are {', '.join(stems)}")
            self.check(name in available, "stems", f"asks for {name}, which {model} does not make (only "
                       f"{', '.join(SIX_STEMS)} makes guitar and piano)")
        self.check(len(set(request.get("stems", []))) == len(request.get("stems", [])), "stems", "names a stem twice")

    def result_files(self, response):
        # Every stem fal returned; a stem it left out (or sent as null) is simply not there.
        files = {}
        for name in self.stems():
            item = response.get(name)
            url = item.get("url") if isinstance(item, dict) else item
            if isinstance(url, str) and url:
                files[name] = url
        if not files:
            raise ValueError("the response has no stem file")
        return files

    def outputs(self, results):
        from ...media import audio as audio_io

        missing = [name for name in self.stems() if any(name not in r.audios for r in results)]
        if missing:
            self.say(f"Not returned by the model, output as silence: {', '.join(missing)}")
        return tuple(audio_io.stack([r.audios[name] if name in r.audios else _silence_like(r) for r in results])
                     for name in self.stems())


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
