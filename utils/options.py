"""Per-workflow call options, carried by the fal Client node's FAL_CLIENT output.

Kept apart from the job runner so that declaring nodes imports nothing heavy.
"""

from dataclasses import dataclass
from pathlib import Path

from . import comfy


@dataclass(frozen=True)
class CallOptions:
    """What the fal Client node carries. Never the key: only a profile name."""

    profile: str = ""
    queue_timeout: float = 300.0
    overall_timeout: float = 3600.0
    output_dir: str = ""

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser() if self.output_dir.strip() else comfy.output_directory()
