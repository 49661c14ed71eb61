"""ACE-Step: text-to-audio, prompt-to-audio, and the edit family (inpaint, outpaint, remix).

The edit nodes take tags/lyrics (and the original seed) as sockets-or-widgets, so
"generate -> repaint 10-20 s -> extend" is plain wiring from a generator's outputs.
Limits the docs leave open (marked "pack limit") follow ACE-Step's own UI.
"""

from . import widgets as w
from .base import FalAudioNode, duration

SCHEDULERS = ("euler", "heun")
GUIDANCE_TYPES = ("cfg", "apg", "cfg_star")
MAX_SECONDS = 240.0  # ACE-Step generates at most 4 minutes (pack limit)
MIN_INPUT_SECONDS = 1.0  # pack limit: a shorter clip gives the model nothing to edit
NOT_SET = -1  # an optional seed the docs give no default for

TAGS = w.text("Comma-separated list of genre tags to control the style of the generated audio.",
              multiline=True)
LYRICS = w.text("Lyrics to be sung in the audio. If not provided or if [inst] or [instrumental] is the content "
                "of this field, no lyrics will be sung. Use control structures like [verse], [chorus] and "
                "[bridge] to control the structure of the song.", multiline=True)
DURATION = w.number("The duration of the generated audio in seconds (pack limit 5-240 s).", 60.0, 5.0,
                    MAX_SECONDS, 0.1)

# The generation settings every ACE-Step endpoint shares, defined once.
GUIDANCE = {
    "number_of_steps": w.integer("Number of steps to generate the audio (pack limit 3-100).", 27, 3, 100),
    "scheduler": w.choice(SCHEDULERS, "euler", "Scheduler to use for the generation process."),
    "guidance_type": w.choice(GUIDANCE_TYPES, "apg", "Type of CFG to use for the generation process."),
    "granularity_scale": w.integer("Granularity scale for the generation process. Higher values can reduce "
                                   "artifacts (pack limit 1-100).", 10, 1, 100),
    "guidance_interval": w.number("Guidance interval for the generation. 0.5 means only apply guidance in the "
                                  "middle steps (0.25 * infer_steps to 0.75 * infer_steps).", 0.5, 0.0, 1.0, 0.01),
    "guidance_interval_decay": w.number("Guidance interval decay for the generation. Guidance scale will decay "
                                        "from guidance_scale to min_guidance_scale in the interval. 0.0 means no "
                                        "decay.", 0.0, 0.0, 1.0, 0.01),
    "guidance_scale": w.number("Guidance scale for the generation (pack limit 0-200).", 15.0, 0.0, 200.0, 0.1),
    "minimum_guidance_scale": w.number("Minimum guidance scale for the generation after the decay "
                                       "(pack limit 0-200).", 3.0, 0.0, 200.0, 0.1),
    "tag_guidance_scale": w.number("Tag guidance scale for the generation (pack limit 0-10).", 5.0, 0.0, 10.0, 0.1),
    "lyric_guidance_scale": w.number("Lyric guidance scale for the generation (pack limit 0-10).", 1.5, 0.0, 10.0,
                                     0.1),
}

SOURCE_AUDIO = (f"The song to edit, {MIN_INPUT_SECONDS:g}-{MAX_SECONDS:g} s long (pack limit: ACE-Step makes at "
                f"most {MAX_SECONDS:g} s). A batch of several clips is edited clip by clip (one paid request each) "
                "and returned as a batch.")


class _AceStep(FalAudioNode):
    RETURN_TYPES = ("AUDIO", "STRING", "STRING", "INT")
    RETURN_NAMES = ("audio", "tags", "lyrics", "seed")

    def outputs(self, results):
        # Tags/lyrics/seed as the service reports them (of the first take), ready to wire into an edit node.
        # A field the service leaves out or sends as null becomes "" / 0, never None (which would break wiring).
        first = results[0].response
        return super().outputs(results) + (str(first.get("tags") or ""), str(first.get("lyrics") or ""),
                                           int(first.get("seed") or 0))


class _AceStepEdit(_AceStep):
    """Edits return the whole song: billed by its length (the input clip plus any extension)."""

    def added_seconds(self, request: dict) -> float:
        return 0.0

    def billing(self, request, clips):
        clip = clips.get("audio")
        seconds = duration(clip) + self.added_seconds(request) if clip is not None else None
        return {"seconds": seconds, "characters": None}


class AceStepTextToAudio(_AceStep):
    ENDPOINT = "fal-ai/ace-step"
    DISPLAY_NAME = "ACE-Step Text to Audio (fal)"
    DESCRIPTION = "Generate a song from genre tags and lyrics with ACE-Step."
    REQUIRED_TEXT = ("tags",)
    OUTPUT_SECONDS = "duration"

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({"tags": TAGS, "lyrics": LYRICS, "duration": DURATION, **GUIDANCE})


class AceStepPromptToAudio(_AceStep):
    ENDPOINT = "fal-ai/ace-step/prompt-to-audio"
    DISPLAY_NAME = "ACE-Step Prompt to Audio (fal)"
    DESCRIPTION = "Generate a song from a free-text prompt; ACE-Step writes the tags and lyrics."
    REQUIRED_TEXT = ("prompt",)
    OUTPUT_SECONDS = "duration"

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("Prompt to control the style of the generated audio. This will be used to generate "
                             "tags and lyrics.", multiline=True),
            "instrumental": w.boolean("Whether to generate an instrumental version of the audio."),
            "duration": DURATION,
            **GUIDANCE,
        })


class AceStepAudioInpaint(_AceStepEdit):
    ENDPOINT = "fal-ai/ace-step/audio-inpaint"
    DISPLAY_NAME = "ACE-Step Audio Inpaint (fal)"
    DESCRIPTION = "Repaint a time range of a song (e.g. 10-20 s) with new tags/lyrics."
    REQUIRED_TEXT = ("tags",)
    AUDIO_INPUTS = {"audio": "audio_url"}
    INPUT_SECONDS = (MIN_INPUT_SECONDS, MAX_SECONDS)
    ANCHORS = ("start", "end")

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(SOURCE_AUDIO),
            "start_time_relative_to": w.choice(cls.ANCHORS, "start", "Whether the start time is relative to the "
                                               "start or end of the audio."),
            "start_time": w.number("start time in seconds for the inpainting process.", 0.0, 0.0, MAX_SECONDS),
            "end_time_relative_to": w.choice(cls.ANCHORS, "start", "Whether the end time is relative to the start "
                                             "or end of the audio."),
            "end_time": w.number("end time in seconds for the inpainting process.", 30.0, 0.0, MAX_SECONDS),
            "tags": TAGS,
            "lyrics": LYRICS,
            "variance": w.number("Variance for the inpainting process. Higher values can lead to more diverse "
                                 "results.", 0.5, 0.0, 1.0, 0.01),
            **GUIDANCE,
        })

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


class AceStepAudioOutpaint(_AceStepEdit):
    ENDPOINT = "fal-ai/ace-step/audio-outpaint"
    DISPLAY_NAME = "ACE-Step Audio Outpaint (extend) (fal)"
    DESCRIPTION = "Extend a song before its start and/or after its end."
    REQUIRED_TEXT = ("tags",)
    AUDIO_INPUTS = {"audio": "audio_url"}
    INPUT_SECONDS = (MIN_INPUT_SECONDS, MAX_SECONDS)

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(SOURCE_AUDIO),
            "extend_before_duration": w.number("Duration in seconds to extend the audio from the start.", 0.0, 0.0,
                                               MAX_SECONDS),
            "extend_after_duration": w.number("Duration in seconds to extend the audio from the end.", 30.0, 0.0,
                                              MAX_SECONDS),
            "tags": TAGS,
            "lyrics": LYRICS,
            **GUIDANCE,
        })

    def added_seconds(self, request):
        return float(request.get("extend_before_duration", 0.0)) + float(request.get("extend_after_duration", 0.0))

    def validate(self, request, clips):
        added = request["extend_before_duration"] + request["extend_after_duration"]
        self.check(added > 0, "extend_after_duration", "and extend_before_duration are both 0: nothing to extend")
        total = duration(clips["audio"]) + added
        self.check(total <= MAX_SECONDS, "extend_after_duration",
                   f"would make the song {total:.1f} s long; ACE-Step makes at most {MAX_SECONDS:g} s")


class AceStepAudioToAudio(_AceStepEdit):
    ENDPOINT = "fal-ai/ace-step/audio-to-audio"
    DISPLAY_NAME = "ACE-Step Audio to Audio (remix / lyrics edit) (fal)"
    DESCRIPTION = "Remix a song with new tags, or change its lyrics while keeping the music."
    REQUIRED_TEXT = ("tags", "original_tags")
    AUDIO_INPUTS = {"audio": "audio_url"}
    INPUT_SECONDS = (MIN_INPUT_SECONDS, MAX_SECONDS)
    UNSET = {"original_seed": NOT_SET}

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "audio": w.audio(SOURCE_AUDIO),
            "edit_mode": w.choice(("lyrics", "remix"), "remix", "Whether to edit the lyrics only or remix the audio."),
            "original_tags": w.text("Original tags of the audio file (wire an ACE-Step node's 'tags' output).",
                                    multiline=True),
            "original_lyrics": w.text("Original lyrics of the audio file (wire an ACE-Step node's 'lyrics' output).",
                                      multiline=True),
            "original_seed": w.integer("Original seed of the audio file (wire an ACE-Step node's 'seed' output). "
                                       "-1 = not set: not sent.", NOT_SET, NOT_SET, w.SEED_MAX),
            "tags": TAGS,
            "lyrics": LYRICS,
            **GUIDANCE,
        })
