"""Per-workflow call options, carried by the fal Client node's FAL_CLIENT output.

Kept apart from the job runner so that declaring nodes imports nothing heavy.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import comfy


@dataclass(frozen=True)
class CallOptions:
    """What the fal Client node carries. Never the key: only a profile name."""

    profile: str = ""
    queue_timeout: float = 300.0
    overall_timeout: float = 3600.0
    output_dir: str = ""
    # USD per local day, 0 = no limit; None (no fal Client connected): $FAL_AUDIO_DAILY_LIMIT_USD.
    daily_spend_limit_usd: Optional[float] = None

    def spend_limit(self) -> float:
        from .ledger import check_limit, limit_from_env

        if self.daily_spend_limit_usd is None:
            return limit_from_env()
        return check_limit(self.daily_spend_limit_usd, "fal Client: 'daily_spend_limit_usd'")

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir.strip() else comfy.output_directory()
