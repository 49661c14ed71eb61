"""ElevenLabs on fal, current generation: Sound Effects v2 and Music.

Both return the output_format they are asked for. MP3 and Opus come in a container; pcm_*,
ulaw_8000 and alaw_8000 are headerless samples, so the node states their layout (16-bit
little-endian PCM or G.711, mono, at the format's rate) and the pack decodes them as such.
"""

from . import widgets as w
from .base import FalAudioNode

OUTPUT_FORMATS = (
    "mp3_22050_32", "mp3_44100_32", "mp3_44100_64", "mp3_44100_96", "mp3_44100_128", "mp3_44100_192",
    "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000", "ulaw_8000", "alaw_8000",
    "opus_48000_32", "opus_48000_64", "opus_48000_96", "opus_48000_128", "opus_48000_192")
DEFAULT_FORMAT = "mp3_44100_128"
RAW = {"pcm": "s16le", "ulaw": "mulaw", "alaw": "alaw"}
AUTO = 0.0  # a length widget at 0: not sent, the model chooses


def raw_layout(output_format: str):
    """The layout of ElevenLabs' headerless formats (codec_rate), None for MP3 / Opus."""
    from ..media.audio import RawLayout

    codec, _, rest = output_format.partition("_")
    return RawLayout(RAW[codec], int(rest.split("_")[0]), 1) if codec in RAW else None


def output_format(tooltip_extra: str = ""):
    return w.choice(OUTPUT_FORMATS, DEFAULT_FORMAT,
                    "Output format of the generated audio. Formatted as codec_sample_rate_bitrate. Every format "
                    "comes out as AUDIO: pcm_* (16-bit), ulaw_8000 and alaw_8000 are headerless mono samples the "
                    "node decodes at the format's rate. mp3_44100_192 needs ElevenLabs' Creator tier or above, "
                    "pcm_44100 the Pro tier." + tooltip_extra)


class ElevenLabsSoundEffectsV2(FalAudioNode):
    ENDPOINT = "fal-ai/elevenlabs/sound-effects/v2"
    DISPLAY_NAME = "ElevenLabs Sound Effects v2 (fal)"
    DESCRIPTION = ("Generate a sound effect from a description with ElevenLabs (v2): 0.5-22 s or auto length, "
                   "optionally a seamless loop, in any of ElevenLabs' output formats.")
    SENDS_SEED = False
    REQUIRED_TEXT = ("text",)
    UNSET = {"duration_seconds": AUTO}
    OUTPUT_SECONDS = "duration_seconds"

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "text": w.text("The text describing the sound effect to generate", multiline=True),
            "duration_seconds": w.number("Duration in seconds (0.5-22). 0 = not set: the optimal duration will be "
                                         "determined from the prompt.", AUTO, 0.0, 22.0, 0.1),
            "loop": w.boolean("Whether to create a sound effect that loops smoothly."),
            "prompt_influence": w.number("How closely to follow the prompt (0-1). Higher values mean less "
                                         "variation.", 0.3, 0.0, 1.0, 0.01),
            "output_format": output_format(),
        }, sent_seed=False)

    def raw_layout(self, request):
        return raw_layout(request["output_format"])

    def validate(self, request, clips):
        if "duration_seconds" in request:
            self.check(0.5 <= request["duration_seconds"] <= 22.0, "duration_seconds",
                       "must be between 0.5 and 22 seconds (or 0 to let the model choose)")
        self.check(0.0 <= request["prompt_influence"] <= 1.0, "prompt_influence", "must be between 0 and 1")


MIN_MUSIC_MS, MAX_MUSIC_MS = 3000, 600000

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
PLAN_EXAMPLE = ('{"positive_global_styles": ["synthwave"], "negative_global_styles": ["vocals"], "sections": '
                '[{"section_name": "Intro", "positive_local_styles": ["slow build"], "negative_local_styles": [], '
                '"duration_ms": 15000, "lines": []}]}')


class ElevenLabsMusic(FalAudioNode):
    ENDPOINT = "fal-ai/elevenlabs/music"
    DISPLAY_NAME = "ElevenLabs Music (fal)"
    DESCRIPTION = ("Generate a song or instrumental (3 s to 10 min) with ElevenLabs Music, from a prompt or from a "
                   "composition plan (sections with styles, lyrics and durations) given as JSON.")
    SENDS_SEED = False

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The text prompt describing the music to generate. Give either a prompt or a "
                             "composition_plan.", multiline=True),
            "music_length_seconds": w.number(
                "The length of the song in seconds (3-600), sent as music_length_ms. Used only with a prompt. "
                "0 = not set: the model chooses a length based on the prompt.", AUTO, 0.0, 600.0, 0.5),
            "force_instrumental": w.boolean(
                "If true, guarantees that the generated song will be instrumental. If false, the song may or may "
                "not be instrumental depending on the prompt. Can only be used with prompt."),
            "respect_sections_durations": w.boolean(
                "Controls how strictly section durations in the composition_plan are enforced (only with a "
                "composition plan). True: each section's duration_ms is respected precisely. False: the model may "
                "adjust section durations (better quality and latency) while keeping the total song duration.",
                default=True),
            "output_format": output_format(),
        }, {
            "composition_plan": w.text(
                "The composition plan for the music, as JSON (fal's MusicCompositionPlan): positive_global_styles "
                "and negative_global_styles (lists of strings) and sections, each with section_name (1-100 "
                "characters), positive_local_styles, negative_local_styles, duration_ms (3000-120000) and lines "
                "(lyrics, at most 200 characters each). Checked before anything is paid. Leave empty to use the "
                f"prompt. Example: {PLAN_EXAMPLE}", multiline=True),
        }, sent_seed=False)

    def prepare(self, request):
        seconds = request.pop("music_length_seconds", AUTO)
        plan_text = request.pop("composition_plan", None)
        if plan_text is None:
            self.check("prompt" in request, "prompt", "is empty: give a prompt or a composition_plan")
            request.pop("respect_sections_durations", None)  # only has an effect with a plan
            if seconds != AUTO:
                self.check(MIN_MUSIC_MS <= seconds * 1000 <= MAX_MUSIC_MS, "music_length_seconds",
                           f"is {seconds:g} s; ElevenLabs Music makes 3-600 s (or 0 to let the model choose)")
                request["music_length_ms"] = int(round(seconds * 1000))
            return request
        self.check("prompt" not in request, "composition_plan", "and prompt are both given: use one or the other")
        self.check(seconds == AUTO, "music_length_seconds",
                   "works only with a prompt; with a composition_plan the sections' duration_ms set the length "
                   "(set it to 0)")
        self.check(not request.pop("force_instrumental", False), "force_instrumental",
                   "works only with a prompt; with a composition_plan leave it off (give the sections no lines)")
        from ..core.json_text import parse_object
        from ..core.schema import problem

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

    def raw_layout(self, request):
        return raw_layout(request["output_format"])

    def billing(self, request, clips):
        """Billed by output minute: the length asked for, or the plan's sections added up (None: model's choice)."""
        if "composition_plan" in request:
            seconds = sum(s["duration_ms"] for s in request["composition_plan"]["sections"]) / 1000.0
        else:
            seconds = request["music_length_ms"] / 1000.0 if "music_length_ms" in request else None
        return {"seconds": seconds, "characters": None}
