"""YuE: a song with vocals from sectioned lyrics and genre words."""

import re

from . import widgets as w
from .base import FalAudioNode


class YuE(FalAudioNode):
    ENDPOINT = "fal-ai/yue"
    DISPLAY_NAME = "YuE (fal)"
    DESCRIPTION = ("Generate a song with vocals from lyrics in [verse]/[chorus] sections and space-separated genres. "
                   "fal's current catalog no longer lists this endpoint: it may be retired (then the node says so "
                   "and names its successors).")
    SUCCESSOR = "MiniMax Music v2.6 (fal) node or the ACE-Step Text to Audio (fal) node"
    SENDS_SEED = False
    REQUIRED_TEXT = ("lyrics", "genres")

    @classmethod
    def INPUT_TYPES(cls):
        return w.node_inputs({
            "lyrics": w.text("The lyrics to sing. Must have two sections. Sections start with either [chorus] or a "
                             "[verse].", multiline=True),
            "genres": w.text("The genres (separated by a space ' ') to guide the music generation, e.g. "
                             "'inspiring female uplifting pop airy vocal'."),
        }, sent_seed=False)

    def validate(self, request, clips):
        sections = {s.lower() for s in re.findall(r"\[(verse|chorus)\]", request["lyrics"], re.IGNORECASE)}
        missing = {"verse", "chorus"} - sections
        self.check(not missing, "lyrics", "needs both a [verse] and a [chorus] section "
                   f"(missing: {', '.join(sorted('[' + m + ']' for m in missing))})" if missing else "")
