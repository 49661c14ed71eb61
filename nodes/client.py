"""The fal Client node: per-workflow call options. It names a credentials profile but
never holds the key, so a saved or shared workflow cannot leak it."""

import math
import re

from ..utils.errors import invalid
from ..utils.options import CallOptions
from . import widgets

_LOOKS_LIKE_KEY = re.compile(r"[A-Za-z0-9_\-]{6,}:[A-Za-z0-9_\-]{16,}")


class FalClientNode:
    DISPLAY_NAME = "fal Client"
    DESCRIPTION = ("Call options for fal model nodes: credentials profile, queue and overall timeouts, "
                   "and the folder where paid results are kept. The API key itself is never stored here.")
    CATEGORY = "audio/fal"
    FUNCTION = "create"
    RETURN_TYPES = ("FAL_CLIENT",)
    RETURN_NAMES = ("fal_client",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "profile": widgets.text(
                    "Name of a profile in your fal credentials file (e.g. 'work'). Empty: FAL_KEY from the "
                    "environment, else the file's 'default' profile. Never paste the key itself here: "
                    "widgets are saved in the workflow."),
                "queue_timeout": widgets.number(
                    "Seconds a request may wait in fal's queue before it is cancelled (no runner picked it up; "
                    "often the account is out of credits).", 300.0, 5.0, 86400.0, 1.0),
                "overall_timeout": widgets.number(
                    "Seconds a node may wait in all. A request still queued then is cancelled; one already "
                    "running is left to finish and is picked up by the next run with the same inputs.",
                    3600.0, 10.0, 86400.0, 1.0),
                "output_dir": widgets.text(
                    "Folder where every paid result file is kept before decoding. Empty: "
                    "ComfyUI/output/fal-audio."),
                "daily_spend_limit_usd": widgets.number(
                    "Most US dollars the pack may spend on fal per day (your local date), counted from its spend "
                    "ledger: a run whose estimate would pass it is refused before anything is uploaded or sent. "
                    "0 = no limit. Nodes without a fal Client use $FAL_AUDIO_DAILY_LIMIT_USD.",
                    0.0, 0.0, 100000.0, 0.01),
            }
        }

    def create(self, profile, queue_timeout, overall_timeout, output_dir, daily_spend_limit_usd=0.0):
        if _LOOKS_LIKE_KEY.search(profile or ""):
            # Don't echo it; tell the user to move it out of the workflow.
            raise invalid(self.DISPLAY_NAME, "profile",
                          "looks like an API key, not a profile name. Remove it from the workflow and set "
                          "FAL_KEY or a credentials file instead")
        limit = daily_spend_limit_usd
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not math.isfinite(limit) or limit < 0:
            raise invalid(self.DISPLAY_NAME, "daily_spend_limit_usd",
                          f"must be 0 (no limit) or a positive number of US dollars, not {limit!r}")
        return (CallOptions(profile.strip(), float(queue_timeout), float(overall_timeout), output_dir.strip(),
                            float(limit)),)
