"""The fal Spend node: what the pack has spent on fal, from its ledger (today, last 7 days, per model)."""

from typing import TYPE_CHECKING

from . import widgets

if TYPE_CHECKING:
    from ..jobs.options import CallOptions


class FalSpend:
    DISPLAY_NAME = "fal Spend"
    DESCRIPTION = ("What this pack has spent on fal today, in the last 7 days and per model, from its spend ledger "
                   "(estimates settled with what fal returned; reused results and failed or cancelled requests "
                   "cost $0). Runs every time the workflow is queued.")
    CATEGORY = "audio/fal"
    FUNCTION = "report"
    RETURN_TYPES = ("STRING", "FLOAT")
    RETURN_NAMES = ("report", "today_usd")
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {},
            "optional": {"fal_client": (widgets.FAL_CLIENT[0], {
                "tooltip": "Optional: a fal Client, to show its daily_spend_limit_usd and what is left of it today. "
                           "Unconnected: $FAL_AUDIO_DAILY_LIMIT_USD."})},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # never equal to itself: the spend changes between runs, so always re-run

    async def report(self, fal_client: "CallOptions" = None, unique_id=None):
        from ..core import comfy
        from ..jobs.options import CallOptions

        options = fal_client or CallOptions()
        book = options.books()
        text, today = await book.call(book.spend_report, options.spend_limit())
        comfy.Progress(unique_id).text(text.splitlines()[1] if "\n" in text else text)
        return {"ui": {"text": [text]}, "result": (text, today)}
