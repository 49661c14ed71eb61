"""Per-workflow call options, carried by the fal Client node's FAL_CLIENT output.

Kept apart from the job runner so that declaring nodes imports nothing heavy.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core import comfy
from ..core.errors import InvalidInput
from ..money.ledger import check_limit, limit_from_env

# Requests one node run may make (clips of a batch x takes) unless the fal Client raises it.
MAX_REQUESTS_PER_RUN = 16


class OutputFolderError(ValueError):
    """An output_dir the rules refuse; the text is the rule (the caller names node and field)."""


@dataclass(frozen=True)
class CallOptions:
    """What the fal Client node carries. Never the key: only a profile name."""

    profile: str = ""
    queue_timeout: float = 300.0
    overall_timeout: float = 3600.0
    output_dir: str = ""
    # USD per local day, 0 = no limit; None (no fal Client connected): $FAL_AUDIO_DAILY_LIMIT_USD.
    daily_spend_limit_usd: Optional[float] = None
    # Most paid requests one node run may make (clips x takes).
    max_requests_per_run: int = MAX_REQUESTS_PER_RUN
    # Pack-wide cap on fal requests in flight at once (transport.slots); the rest wait for a slot.
    max_concurrent_requests: int = 16

    def spend_limit(self) -> float:
        if self.daily_spend_limit_usd is None:
            return limit_from_env()
        return check_limit(self.daily_spend_limit_usd, "fal Client: 'daily_spend_limit_usd'")

    def books(self):
        """The journal of this workflow's books (money/journal.py): the database $FAL_AUDIO_DATABASE_URL names,
        else the `database_url` of this profile (or of "default" when none is named) in the credentials file,
        else the SQLite file in the data folder. One journal per database and process."""
        from ..money import journal, store
        from ..transport import credentials

        if store.url_from_env():  # the environment wins over every profile
            return journal.current()
        return journal.current(*credentials.database_url(self.profile))

    def output_path(self) -> Path:
        if not self.output_dir.strip():
            return comfy.output_directory()
        return resolve_output_dir(self.output_dir)


def resolve_output_dir(output_dir: str) -> Path:
    """The folder a workflow's `output_dir` names, which must lie inside ComfyUI's output folder.

    A shared workflow must not decide where on the server files are written: the value is a
    path relative to ComfyUI's output folder, resolved (symlinks included) and checked to
    stay inside it. The server's operator sets any folder with FAL_AUDIO_OUTPUT_DIR instead.
    """
    value = output_dir.strip()
    root = comfy.output_root()
    if value.startswith("~"):
        raise OutputFolderError(f"starts with '~'; give a folder inside ComfyUI's output folder ({root}), "
                                "relative to it, e.g. 'fal-audio/songs'")
    candidate = Path(value)
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(candidate if candidate.is_absolute() else root / candidate))
    if target != real_root and real_root not in target.parents:
        raise OutputFolderError(f"must be a folder inside ComfyUI's output folder ({root}), relative to it "
                                "(e.g. 'fal-audio/songs'); it points outside it. The server's operator can choose "
                                "any folder with FAL_AUDIO_OUTPUT_DIR")
    return target


def usable_output_folder(options: CallOptions, node: str) -> Path:
    """The folder results will be kept in, created and proven writable before anything is paid for."""
    import tempfile

    try:
        folder = options.output_path()
    except OutputFolderError as exc:
        raise InvalidInput(f"{node}: the fal Client's 'output_dir' {exc}. Nothing was sent to fal.") from None
    source = ("the fal Client's 'output_dir'" if options.output_dir.strip()
              else "FAL_AUDIO_OUTPUT_DIR" if os.environ.get("FAL_AUDIO_OUTPUT_DIR") else "the default output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".fal-audio-write-test-"):
            pass
    except OSError as exc:
        raise InvalidInput(f"{node}: results cannot be kept in {folder} ({source}): {type(exc).__name__}: "
                           f"{exc.strerror or exc}. Make it a writable folder or choose another. Nothing was sent "
                           "to fal.") from None
    return folder
