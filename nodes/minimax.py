"""MiniMax Music: a song in the style of a reference track, singing the given lyrics."""

from . import widgets as w
from .base import FalAudioNode, duration

MAX_LYRICS = 600
MIN_REFERENCE_SECONDS = 15.0
MAX_REFERENCE_SECONDS = 600.0  # pack limit: the docs give none


class MiniMaxMusic(FalAudioNode):
    ENDPOINT = "fal-ai/minimax-music"
    DISPLAY_NAME = "MiniMax Music (fal)"
    DESCRIPTION = "Generate a song in the style of a reference track (over 15 s, music and vocals) with given lyrics."
    SENDS_SEED = False
    REQUIRED_TEXT = ("prompt",)
    AUDIO_INPUTS = {"reference_audio": "reference_audio_url"}
    # "longer than 15 seconds" (exclusive) is checked in validate(); the base refuses the clearly wrong.
    INPUT_SECONDS = (MIN_REFERENCE_SECONDS, MAX_REFERENCE_SECONDS)

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "prompt": w.text("Lyrics with optional formatting. You can use a newline to separate each line of "
                             "lyrics. You can use two newlines to add a pause between lines. You can use double "
                             "hash marks (##) at the beginning and end of the lyrics to add accompaniment. "
                             "Maximum 600 characters.", multiline=True),
            "reference_audio": w.audio("Reference song, should contain music and vocals, longer than 15 seconds "
                                       "and at most 600 s (pack limit) (sent as WAV). A batch makes one song per "
                                       "clip."),
        }, sent_seed=False)

    def validate(self, request, clips):
        self.check(len(request["prompt"]) <= MAX_LYRICS, "prompt",
                   f"is {len(request['prompt'])} characters long; MiniMax takes at most {MAX_LYRICS}")
        self.check("reference_audio" in clips, "reference_audio", "is required")
        seconds = duration(clips["reference_audio"])
        # fal's docs: "longer than 15 seconds" (so exactly 15 s is refused).
        self.check(seconds > MIN_REFERENCE_SECONDS, "reference_audio",
                   f"is {seconds:.1f} s long; MiniMax needs a reference longer than {MIN_REFERENCE_SECONDS:g} s")
