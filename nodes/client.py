"""The fal Client node: per-workflow call options. It names a credentials profile but
never holds the key, so a saved or shared workflow cannot leak it."""

import math
import re

from . import widgets
from .widgets import MAX_REQUESTS_PER_RUN

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
                    "environment, else the file's 'default' profile. A profile's database_url (if any) keeps this "
                    "workflow's spend and results on that shared database. Never paste the key itself here: "
                    "widgets are saved in the workflow."),
                "queue_timeout": widgets.number(
                    "Seconds a request may wait in fal's queue before it is cancelled (no runner picked it up; "
                    "often the account is out of credits).", 300.0, 5.0, 86400.0, 1.0),
                "overall_timeout": widgets.number(
                    "Seconds a node may wait in all. A request still queued then is cancelled; one already "
                    "running is left to finish and is picked up by the next run with the same inputs.",
                    3600.0, 10.0, 86400.0, 1.0),
                "output_dir": widgets.text(
                    "Folder where every paid result file is kept before decoding, relative to ComfyUI's output "
                    "folder (e.g. 'fal-audio/songs'); it must stay inside that folder (a shared workflow cannot "
                    "write elsewhere on the server). Empty: ComfyUI/output/fal-audio, or FAL_AUDIO_OUTPUT_DIR "
                    "if the server sets it."),
                "daily_spend_limit_usd": widgets.number(
                    "Most US dollars the pack may spend on fal per day (your local date), counted from its spend "
                    "ledger: a run whose estimate would pass it is refused before anything is uploaded or sent. "
                    "0 = no limit. Nodes without a fal Client use $FAL_AUDIO_DAILY_LIMIT_USD.",
                    0.0, 0.0, 100000.0, 0.01),
                "max_requests_per_run": widgets.integer(
                    "Most paid requests one node run may make (clips of an AUDIO batch x takes); a run that "
                    f"would make more is refused before anything is sent (pack limit, default "
                    f"{MAX_REQUESTS_PER_RUN}).", MAX_REQUESTS_PER_RUN, 1, 1024),
                "max_concurrent_requests": widgets.integer(
                    "Most fal requests in flight at once, across the whole pack (list inputs, takes and clip "
                    "batches all count); the rest wait for a free slot before anything is sent. fal's usual "
                    "account concurrency is 16 (pack limit 1-64).", 16, 1, 64),
            }
        }

    def create(self, profile, queue_timeout, overall_timeout, output_dir, daily_spend_limit_usd=0.0,
               max_requests_per_run=MAX_REQUESTS_PER_RUN, max_concurrent_requests=16):
        from ..core import validate
        from ..core.errors import invalid
        from ..jobs.options import CallOptions, OutputFolderError, resolve_output_dir

        validate.widgets(self.DISPLAY_NAME, self.INPUT_TYPES(), {
            "profile": profile, "queue_timeout": queue_timeout, "overall_timeout": overall_timeout,
            "output_dir": output_dir})
        if _LOOKS_LIKE_KEY.search(profile or ""):
            # Don't echo it; tell the user to move it out of the workflow.
            raise invalid(self.DISPLAY_NAME, "profile",
                          "looks like an API key, not a profile name. Remove it from the workflow and set "
                          "FAL_KEY or a credentials file instead")
        limit = daily_spend_limit_usd
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not math.isfinite(limit) or limit < 0:
            raise invalid(self.DISPLAY_NAME, "daily_spend_limit_usd",
                          f"must be 0 (no limit) or a positive number of US dollars, not {limit!r}")
        if output_dir.strip():
            try:
                resolve_output_dir(output_dir)
            except OutputFolderError as exc:
                raise invalid(self.DISPLAY_NAME, "output_dir", str(exc)) from None
        if isinstance(max_requests_per_run, bool) or not isinstance(max_requests_per_run, int) \
                or not 1 <= max_requests_per_run <= 1024:
            raise invalid(self.DISPLAY_NAME, "max_requests_per_run", "must be a whole number from 1 to 1024")
        if isinstance(max_concurrent_requests, bool) or not isinstance(max_concurrent_requests, int) \
                or not 1 <= max_concurrent_requests <= 64:
            raise invalid(self.DISPLAY_NAME, "max_concurrent_requests", "must be a whole number from 1 to 64")
        return (CallOptions(profile.strip(), float(queue_timeout), float(overall_timeout), output_dir.strip(),
                            daily_spend_limit_usd=float(limit), max_requests_per_run=max_requests_per_run,
                            max_concurrent_requests=max_concurrent_requests),)
