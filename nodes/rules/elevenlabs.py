"""ElevenLabs' rules: headerless output formats, the music prompt-or-plan choice, voice ids (a stock voice's name or a
voice id), sound effects of automatic length, a dialogue written as "Speaker: line" text and priced by its
characters, Scribe's boosted terms.

ElevenLabs returns the output_format it is asked for. MP3 and Opus come in a container; pcm_*, ulaw_8000 and
alaw_8000 are headerless samples, so their layout (16-bit little-endian PCM or G.711, mono, at the format's rate)
is stated here and the pack decodes them as such.
"""

import re

RAW = {"pcm": "s16le", "ulaw": "mulaw", "alaw": "alaw"}
MAX_MUSIC_MS = 600000
VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")  # ElevenLabs voice ids: 20 letters and digits
LANGUAGE_CODE = re.compile(r"[a-z]{2}")  # ISO 639-1
# ElevenLabs' stock voices, by name (the ElevenLabs TTS v3 node offers the same list).
VOICES = ("Rachel", "Aria", "Roger", "Sarah", "Laura", "Charlie", "George", "Callum", "River", "Liam", "Charlotte",
          "Alice", "Matilda", "Will", "Jessica", "Eric", "Chris", "Brian", "Daniel", "Lily", "Bill")
SPEAKER_LINE = re.compile(r"\s*([A-Za-z0-9_-]{1,40})\s*:\s*(.*\S)\s*")  # "Aria: Hello there."
MAX_LOCATORS = 3  # fal: "You may have up to 3 locators per request"
MAX_TERM = 50  # Scribe: "Up to 100 keyterms, max 50 characters each"
KEYTERM_PREMIUM = 1.3  # Scribe: keyterms "add 30% premium over base transcription price"

# fal's MusicCompositionPlan / MusicSection types, with the limits their descriptions state.
STYLES = {"type": "array", "required": True, "items": {"type": "string"}}
COMPOSITION_PLAN = {"type": "object", "properties": {
    "positive_global_styles": STYLES,
    "negative_global_styles": STYLES,
    "sections": {"type": "array", "required": True, "items": {"type": "object", "properties": {
        "section_name": {"type": "string", "required": True, "min_length": 1, "max_length": 100},
        "positive_local_styles": STYLES,
        "negative_local_styles": STYLES,
        "duration_ms": {"type": "integer", "required": True, "minimum": 3000, "maximum": 120000},
        "lines": {"type": "array", "required": True, "items": {"type": "string", "max_length": 200}},
    }}},
}}


def raw_layout(output_format: str):
    """The layout of ElevenLabs' headerless formats (codec_rate), None for MP3 / Opus."""
    from ...media.audio import RawLayout

    codec, _, rest = output_format.partition("_")
    return RawLayout(RAW[codec], int(rest.split("_")[0]), 1) if codec in RAW else None


class OutputFormat:
    def raw_layout(self, request):
        return raw_layout(request["output_format"])


class SoundEffects:
    def billing(self, request, clips):
        # Auto length (not sent): priced at the longest the model makes, settled with what it returns.
        longest = self.item("duration_seconds")["max"]
        return {"seconds": float(request.get("duration_seconds", longest)), "characters": None}


class Music(OutputFormat):
    def prepare(self, request):
        seconds = request.pop("music_length_seconds", None)
        plan_text = request.pop("composition_plan", None)
        if plan_text is None:
            self.check("prompt" in request, "prompt", "is empty: give a prompt or a composition_plan")
            request.pop("respect_sections_durations", None)  # only has an effect with a plan
            if seconds is not None:
                request["music_length_ms"] = int(round(seconds * 1000))
            return request
        self.check("prompt" not in request, "composition_plan", "and prompt are both given: use one or the other")
        self.check(seconds is None, "music_length_seconds",
                   "works only with a prompt; with a composition_plan the sections' duration_ms set the length "
                   "(set it to 0)")
        self.check(not request.pop("force_instrumental", False), "force_instrumental",
                   "works only with a prompt; with a composition_plan leave it off (give the sections no lines)")
        from ...core.json_text import parse_object
        from ...core.schema import problem

        plan = parse_object(plan_text, self.DISPLAY_NAME, "composition_plan")
        found = problem(plan, COMPOSITION_PLAN)
        if found:
            self.check(False, "composition_plan", f"is not a valid MusicCompositionPlan: {found[0]} {found[1]}")
        self.check(len(plan["sections"]) > 0, "composition_plan", "has no sections")
        total = sum(section["duration_ms"] for section in plan["sections"])
        self.check(total <= MAX_MUSIC_MS, "composition_plan",
                   f"sections add up to {total / 1000:g} s; ElevenLabs Music makes at most {MAX_MUSIC_MS // 1000} s")
        request["composition_plan"] = plan
        return request

    def billing(self, request, clips):
        """Billed by output minute: the length asked for, or the plan's sections added up (None: model's choice)."""
        if "composition_plan" in request:
            seconds = sum(s["duration_ms"] for s in request["composition_plan"]["sections"]) / 1000.0
        else:
            seconds = request["music_length_ms"] / 1000.0 if "music_length_ms" in request else None
        return {"seconds": seconds, "characters": None}


def check_language_code(request: dict, check) -> None:
    """An ElevenLabs language code, when one is given, is two letters (ISO 639-1)."""
    if "language_code" in request:
        check(LANGUAGE_CODE.fullmatch(request["language_code"]) is not None, "language_code",
              f"is {request['language_code']!r}; use a two-letter ISO 639-1 code such as 'en' (or leave it empty)")


class Speech:
    def validate(self, request, clips):
        voice = request.get("voice", self.item("voice")["default"])
        self.check(voice in self.item("voice")["options"] or VOICE_ID.fullmatch(voice) is not None, "voice_id",
                   f"is {voice!r}, which is not an ElevenLabs voice id (20 letters and digits)")
        check_language_code(request, self.check)


def voice_problem(voice: str) -> str:
    """Why a voice is neither a stock voice's name nor an ElevenLabs voice id ("" when it is one)."""
    if voice in VOICES or VOICE_ID.fullmatch(voice):
        return ""
    return (f"is {voice!r}, which is neither a stock voice ({', '.join(VOICES[:5])}, ...; see the help page) nor an "
            "ElevenLabs voice id (20 letters and digits)")


class VoiceChanger:
    def validate(self, request, clips):
        problem = voice_problem(request.get("voice", self.item("voice")["default"]))
        self.check(not problem, "voice", problem)


def dialogue_lines(script: str, check) -> list:
    """A dialogue written as "Speaker: line" text -> fal's dialogue blocks ({"text", "voice"}); a line without a
    speaker continues the one before."""
    lines = []
    for number, text in enumerate(script.splitlines(), 1):
        if not text.strip():
            continue
        match = SPEAKER_LINE.fullmatch(text)
        if match:
            lines.append({"text": match.group(2), "voice": match.group(1)})
        elif lines:
            lines[-1]["text"] += " " + text.strip()
        else:
            check(False, "script", f"line {number} names no speaker: write each line as 'Speaker: text' "
                                   "(e.g. 'Aria: Hello there.')")
    return lines


class Dialogue:
    def prepare(self, request):
        script = request.pop("script", None)
        if script is not None:
            self.check("inputs" not in request, "script",
                       "and inputs are both given: write the dialogue in one of them, leave the other empty")
            request["inputs"] = dialogue_lines(script, self.check)
        self.check(bool(request.get("inputs")), "inputs",
                   "is empty: give the dialogue as JSON lines here or as 'Speaker: line' text in 'script'")
        for index, line in enumerate(request["inputs"]):
            problem = voice_problem(line["voice"])
            self.check(not problem, f"inputs[{index}].voice", problem)
        self.check(len(request.get("pronunciation_dictionary_locators", [])) <= MAX_LOCATORS,
                   "pronunciation_dictionary_locators", f"has more than {MAX_LOCATORS} locators; fal takes at most "
                                                        f"{MAX_LOCATORS}")
        check_language_code(request, self.check)
        return request

    def billing(self, request, clips):
        """Billed per 1,000 characters of every line's text (a price badge reads the script before it is shaped)."""
        lines = request.get("inputs")
        if not isinstance(lines, list) and isinstance(request.get("script"), str):
            lines = dialogue_lines(request["script"], lambda *_: None)
        texts = [line.get("text") for line in lines or () if isinstance(line, dict)]
        return {"seconds": None, "characters": sum(len(t) for t in texts if isinstance(t, str)) or None}


class Scribe:
    def validate(self, request, clips):
        for index, term in enumerate(request.get("keyterms", [])):
            self.check(len(term) <= MAX_TERM, f"boosted_terms[{index}]",
                       f"has {len(term)} characters; Scribe takes terms of at most {MAX_TERM}")

    def billing(self, request, clips):
        """Per minute of the clip; boosted terms cost 30 % more (counted as 1.3 times the clip's length)."""
        bill = super().billing(request, clips)
        if request.get("keyterms") and bill["seconds"]:
            bill["seconds"] *= KEYTERM_PREMIUM
        return bill
