"""Text to speech: ElevenLabs TTS v3, MiniMax Speech 2.8 HD, Kokoro (American English).

Each is priced per 1000 characters of its text field (TEXT_FIELD). A voice list is a combo;
a typed voice id (a cloned or library voice) goes in the optional text widget next to it,
which replaces the list's choice when it is not empty.
"""

import json
import re

from . import widgets as w
from .base import FalAudioNode

# ElevenLabs' stock (premade) voices, by the names fal's ElevenLabs endpoints take; Rachel is fal's default.
ELEVENLABS_VOICES = ("Rachel", "Aria", "Roger", "Sarah", "Laura", "Charlie", "George", "Callum", "River", "Liam",
                     "Charlotte", "Alice", "Matilda", "Will", "Jessica", "Eric", "Chris", "Brian", "Daniel", "Lily",
                     "Bill")
ELEVENLABS_VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")  # ElevenLabs voice ids: 20 letters and digits
ELEVENLABS_V3_MAX_CHARACTERS = 5000  # ElevenLabs' limit for Eleven v3 per request
LANGUAGE_CODE = re.compile(r"[a-z]{2}")  # ISO 639-1

# MiniMax's system voices (fal's default is Wise_Woman).
MINIMAX_VOICES = ("Wise_Woman", "Friendly_Person", "Inspirational_girl", "Deep_Voice_Man", "Calm_Woman",
                  "Casual_Guy", "Lively_Girl", "Patient_Man", "Young_Knight", "Determined_Man", "Lovely_Girl",
                  "Decent_Boy", "Imposing_Manner", "Elegant_Man", "Abbess", "Sweet_Girl_2", "Exuberant_Girl")
MINIMAX_EMOTIONS = ("happy", "sad", "angry", "fearful", "disgusted", "surprised", "neutral")
MINIMAX_LANGUAGES = ("Chinese", "Chinese,Yue", "English", "Arabic", "Russian", "Spanish", "French", "Portuguese",
                     "German", "Turkish", "Dutch", "Ukrainian", "Vietnamese", "Indonesian", "Japanese", "Italian",
                     "Korean", "Thai", "Polish", "Romanian", "Greek", "Czech", "Finnish", "Hindi", "Bulgarian",
                     "Danish", "Hebrew", "Malay", "Slovak", "Swedish", "Croatian", "Hungarian", "Norwegian",
                     "Slovenian", "Catalan", "Nynorsk", "Afrikaans", "auto")
MINIMAX_MAX_CHARACTERS = 9999  # MiniMax: the text must be shorter than 10,000 characters
MINIMAX_VOICE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_,\-]{0,255}")  # MiniMax voice ids (system or cloned)
NOT_SET = "not set"  # a combo choice that sends nothing: the model applies its own default

KOKORO_VOICES = ("af_heart", "af_alloy", "af_aoede", "af_bella", "af_jessica", "af_kore", "af_nicole", "af_nova",
                 "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir", "am_liam",
                 "am_michael", "am_onyx", "am_puck", "am_santa")
KOKORO_MAX_CHARACTERS = 10000  # pack limit: fal documents none


class _Speech(FalAudioNode):
    SENDS_SEED = False  # none of these takes a seed: the seed only selects a new take
    MAX_CHARACTERS = 0

    def validate(self, request, clips):
        text = request[self.TEXT_FIELD]
        self.check(len(text) <= self.MAX_CHARACTERS, self.TEXT_FIELD,
                   f"has {len(text)} characters; {self.DISPLAY_NAME.replace(' (fal)', '')} takes at most "
                   f"{self.MAX_CHARACTERS} per request (split the text over several nodes)")


class ElevenLabsTTSv3(_Speech):
    ENDPOINT = "fal-ai/elevenlabs/tts/eleven-v3"
    DISPLAY_NAME = "ElevenLabs TTS v3 (fal)"
    DESCRIPTION = ("Speech from text with ElevenLabs Eleven v3 (expressive, 70+ languages, [audio tags] such as "
                   "[whispers]); optional word timings as JSON.")
    RETURN_TYPES = ("AUDIO", "STRING")
    RETURN_NAMES = ("audio", "timestamps")
    REQUIRED_TEXT = ("text",)
    TEXT_FIELD = "text"
    MAX_CHARACTERS = ELEVENLABS_V3_MAX_CHARACTERS
    OVERRIDES = {"voice_id": "voice"}

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "text": w.text("The text to convert to speech (at most 5,000 characters). Eleven v3 follows audio "
                           "tags such as [whispers], [laughs], [excited].", multiline=True),
            "voice": w.choice(ELEVENLABS_VOICES, "Rachel", "The voice to use for speech generation (ElevenLabs' "
                              "stock voices). A voice_id typed below replaces it."),
            "stability": w.number("Voice stability (0-1). Eleven v3 rounds it to 0 (creative), 0.5 (natural) or "
                                  "1 (robust): lower is more expressive, higher more even.", 0.5, 0.0, 1.0, 0.5),
            "apply_text_normalization": w.choice(("auto", "on", "off"), "auto", "This parameter controls text "
                                                 "normalization with three modes: 'auto', 'on', and 'off'. When set "
                                                 "to 'auto', the system will automatically decide whether to apply "
                                                 "text normalization (e.g., spelling out numbers). With 'on', text "
                                                 "normalization will always be applied, while with 'off', it will be "
                                                 "skipped."),
            "timestamps": w.boolean("Whether to return timestamps for each word in the generated speech (the "
                                    "'timestamps' output, as JSON text)."),
        }, {
            "voice_id": w.text("Optional: an ElevenLabs voice id (20 letters and digits, e.g. a cloned or library "
                               "voice). When set it is sent instead of 'voice'."),
            "language_code": w.text("Optional: language code (ISO 639-1, e.g. 'en', 'de') used to enforce a "
                                    "language for the model. Empty: detected from the text."),
        }, sent_seed=False)

    def validate(self, request, clips):
        super().validate(request, clips)
        voice = request.get("voice", "Rachel")
        self.check(voice in ELEVENLABS_VOICES or ELEVENLABS_VOICE_ID.fullmatch(voice) is not None, "voice_id",
                   f"is {voice!r}, which is not an ElevenLabs voice id (20 letters and digits)")
        self.check(0.0 <= request["stability"] <= 1.0, "stability", "must be between 0 and 1")
        if "language_code" in request:
            self.check(LANGUAGE_CODE.fullmatch(request["language_code"]) is not None, "language_code",
                       f"is {request['language_code']!r}; use a two-letter ISO 639-1 code such as 'en' (or leave it "
                       "empty)")

    def outputs(self, results):
        # The word timings as fal returns them (JSON text; "[]" without timestamps), of the first take.
        timings = results[0].response.get("timestamps") or []
        return super().outputs(results) + (json.dumps(timings, ensure_ascii=False),)


class MiniMaxSpeech28HD(_Speech):
    ENDPOINT = "fal-ai/minimax/speech-2.8-hd"
    DISPLAY_NAME = "MiniMax Speech 2.8 HD (fal)"
    DESCRIPTION = ("High-quality speech from text with MiniMax Speech 2.8 HD: system or cloned voices, emotion, "
                   "speed, pitch, pauses <#0.5#> and interjections such as (laughs).")
    REQUIRED_TEXT = ("prompt",)
    TEXT_FIELD = "prompt"
    MAX_CHARACTERS = MINIMAX_MAX_CHARACTERS
    OVERRIDES = {"custom_voice_id": "voice_id"}
    UNSET = {"emotion": NOT_SET, "language_boost": NOT_SET, "modify_pitch": 0, "modify_intensity": 0,
             "modify_timbre": 0}
    NUMERIC_CHOICES = ("sample_rate", "bitrate", "channel")
    NESTED = {
        "voice_id": "voice_setting.voice_id", "speed": "voice_setting.speed", "vol": "voice_setting.vol",
        "pitch": "voice_setting.pitch", "emotion": "voice_setting.emotion",
        "english_normalization": "voice_setting.english_normalization",
        "format": "audio_setting.format", "sample_rate": "audio_setting.sample_rate",
        "bitrate": "audio_setting.bitrate", "channel": "audio_setting.channel",
        "normalization": "normalization_setting.enabled", "target_loudness": "normalization_setting.target_loudness",
        "target_range": "normalization_setting.target_range", "target_peak": "normalization_setting.target_peak",
        "modify_pitch": "voice_modify.pitch", "modify_intensity": "voice_modify.intensity",
        "modify_timbre": "voice_modify.timbre",
    }

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("Text to convert to speech (fewer than 10,000 characters). Use <#x#> for pauses "
                             "(x = 0.01-99.99 seconds). Supports interjection tags: (laughs), (sighs), (coughs), "
                             "(clears throat), (gasps), (sniffs), (groans), (yawns).", multiline=True),
            "voice_id": w.choice(MINIMAX_VOICES, "Wise_Woman", "Predefined voice ID to use for synthesis. A "
                                 "custom_voice_id typed below replaces it."),
            "speed": w.number("Speech speed (0.5-2.0).", 1.0, 0.5, 2.0, 0.01),
            "vol": w.number("Volume (0-10; MiniMax takes more than 0).", 1.0, 0.01, 10.0, 0.01),
            "pitch": w.integer("Voice pitch (-12 to 12 semitones).", 0, -12, 12),
            "emotion": w.choice((NOT_SET, *MINIMAX_EMOTIONS), NOT_SET, "Emotion of the generated speech. 'not set': "
                                "not sent, the model picks one from the text."),
            "english_normalization": w.boolean("Enables English text normalization to improve number reading "
                                               "performance, with a slight increase in latency."),
            "language_boost": w.choice((NOT_SET, *MINIMAX_LANGUAGES), NOT_SET, "Enhance recognition of specified "
                                       "languages and dialects ('auto': detected). 'not set': not sent."),
            "format": w.choice(("mp3", "flac"), "mp3", "Audio format. (MiniMax's raw 'pcm' is not offered: it has "
                               "no header to decode it by.)"),
            "sample_rate": w.choice(("8000", "16000", "22050", "24000", "32000", "44100"), "32000",
                                    "Sample rate of generated audio (Hz)."),
            "bitrate": w.choice(("32000", "64000", "128000", "256000"), "128000",
                                "Bitrate of generated audio (bits per second, mp3)."),
            "channel": w.choice(("1", "2"), "1", "Number of audio channels (1=mono, 2=stereo)."),
            "normalization": w.boolean("Enable loudness normalization for the audio.", True),
            "target_loudness": w.number("Target loudness in LUFS (pack limit -70 to -10).", -18.0, -70.0, -10.0,
                                        0.1),
            "target_range": w.number("Target loudness range in LU (pack limit 0-20).", 8.0, 0.0, 20.0, 0.1),
            "target_peak": w.number("Target peak level in dBTP (pack limit -3 to 0).", -0.5, -3.0, 0.0, 0.1),
            "modify_pitch": w.integer("Voice modification: pitch adjustment (-100 to 100). Positive values raise "
                                      "pitch, negative values lower it. 0: not sent.", 0, -100, 100),
            "modify_intensity": w.integer("Voice modification: intensity/energy of the voice (-100 to 100). Higher "
                                          "values create more energetic speech. 0: not sent.", 0, -100, 100),
            "modify_timbre": w.integer("Voice modification: timbre adjustment (-100 to 100). Affects the tonal "
                                       "quality of the voice. 0: not sent.", 0, -100, 100),
        }, {
            "custom_voice_id": w.text("Optional: a MiniMax voice id (e.g. a cloned voice). When set it is sent "
                                      "instead of 'voice_id'."),
        }, sent_seed=False)

    def validate(self, request, clips):
        super().validate(request, clips)
        voice = request["voice_setting"]["voice_id"]
        self.check(voice in MINIMAX_VOICES or MINIMAX_VOICE_ID.fullmatch(voice) is not None, "custom_voice_id",
                   f"is {voice!r}, which is not a MiniMax voice id (letters, digits and _ , -, starting with a letter)")
        voice_setting = request["voice_setting"]
        self.check(0.5 <= voice_setting["speed"] <= 2.0, "speed", "must be between 0.5 and 2.0")
        self.check(0.0 < voice_setting["vol"] <= 10.0, "vol", "must be more than 0 and at most 10")
        self.check(-12 <= voice_setting["pitch"] <= 12, "pitch", "must be between -12 and 12")
        norm = request["normalization_setting"]
        self.check(-70.0 <= norm["target_loudness"] <= -10.0, "target_loudness", "must be between -70 and -10 LUFS")
        self.check(0.0 <= norm["target_range"] <= 20.0, "target_range", "must be between 0 and 20 LU")
        self.check(-3.0 <= norm["target_peak"] <= 0.0, "target_peak", "must be between -3 and 0 dBTP")
        for name, value in request.get("voice_modify", {}).items():
            self.check(-100 <= value <= 100, f"modify_{name}", "must be between -100 and 100")


class KokoroAmericanEnglish(_Speech):
    ENDPOINT = "fal-ai/kokoro/american-english"
    DISPLAY_NAME = "Kokoro TTS American English (fal)"
    DESCRIPTION = "Fast, light text to speech in American English with Kokoro (20 voices)."
    REQUIRED_TEXT = ("prompt",)
    TEXT_FIELD = "prompt"
    MAX_CHARACTERS = KOKORO_MAX_CHARACTERS

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("The text to speak, in English (pack limit 10,000 characters).", multiline=True),
            "voice": w.choice(KOKORO_VOICES, "af_heart", "Voice ID for the desired voice (af_: American female, "
                              "am_: American male)."),
            "speed": w.number("Speed of the generated audio (0.1-5). Default is 1.0.", 1.0, 0.1, 5.0, 0.05),
        }, sent_seed=False)

    def validate(self, request, clips):
        super().validate(request, clips)
        self.check(0.1 <= request["speed"] <= 5.0, "speed", "must be between 0.1 and 5")
