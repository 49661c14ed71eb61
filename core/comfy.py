"""ComfyUI hooks (interrupt, progress, folders) that quietly do nothing outside ComfyUI.

Each hook looks its ComfyUI module up when called, never at import time, so the pack
imports without ComfyUI (tests, scripts) and a ComfyUI that loads later is still found.
"""

import importlib
import os
import sys
from pathlib import Path
from typing import Optional

# Top-level packages found missing: not looked for on disk again (every wait step asks for ComfyUI's
# interrupt flag, and a failed import scans sys.path each time) until something imports them.
_missing: set = set()


def _module(name: str):
    module = sys.modules.get(name)
    if module is not None:
        return module
    top = name.partition(".")[0]
    if top in _missing and top not in sys.modules:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        if top not in sys.modules:
            _missing.add(top)
        return None


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel."""
    model_management = _module("comfy.model_management")
    if model_management is not None:
        model_management.throw_exception_if_processing_interrupted()


def is_interrupt(exc: BaseException) -> bool:
    model_management = _module("comfy.model_management")
    exc_type = getattr(model_management, "InterruptProcessingException", None)
    return exc_type is not None and isinstance(exc, exc_type)


class Progress:
    """Progress text under the node and the node's progress bar, when inside ComfyUI."""

    def __init__(self, node_id: Optional[str], total: int = 100):
        self.node_id = node_id
        self._last_text = None
        comfy_utils = _module("comfy.utils")
        self._bar = None
        if comfy_utils is not None and hasattr(comfy_utils, "ProgressBar"):
            try:
                self._bar = comfy_utils.ProgressBar(total, node_id=node_id)
            except TypeError:  # older ComfyUI: no node_id argument
                self._bar = comfy_utils.ProgressBar(total)

    def text(self, message: str) -> None:
        if message == self._last_text:
            return
        self._last_text = message
        server = _module("server")
        instance = getattr(getattr(server, "PromptServer", None), "instance", None)
        if instance is not None and self.node_id is not None:
            instance.send_progress_text(message, self.node_id)

    def update(self, value: int) -> None:
        if self._bar is not None:
            self._bar.update_absolute(value)


def _folder(getter: str) -> Optional[Path]:
    folder_paths = _module("folder_paths")
    if folder_paths is None or not hasattr(folder_paths, getter):
        return None
    return Path(getattr(folder_paths, getter)())


def output_root() -> Path:
    """ComfyUI's output folder (outside ComfyUI: ~/fal-audio-output): where workflows may write."""
    output = _folder("get_output_directory")
    return output if output else Path.home() / "fal-audio-output"


def output_directory() -> Path:
    """Where paid results are kept by default: ComfyUI's output folder, else ~/fal-audio-output."""
    override = os.environ.get("FAL_AUDIO_OUTPUT_DIR")
    if override:
        return Path(override)
    output = _folder("get_output_directory")
    return (output / "fal-audio") if output else Path.home() / "fal-audio-output"


def data_directory() -> Path:
    """Where the request journal and credentials live: ComfyUI's user folder, else ~/.fal-audio."""
    override = os.environ.get("FAL_AUDIO_DATA_DIR")
    if override:
        return Path(override)
    user = _folder("get_user_directory")
    return (user / "fal-audio") if user else Path.home() / ".fal-audio"


# The oldest ComfyUI the pack runs on: v0.3.45 (2025-07-21) is the first release with async node functions
# (#8830), which every model node is, and with ProgressBar(node_id=...); CreateVideo/SaveVideo came in v0.3.31,
# per-node progress text in v0.3.34 and templates from a pack's example_workflows/ in v0.3.10.
MIN_COMFYUI = (0, 3, 45)


def _version_tuple(text) -> Optional[tuple]:
    import re

    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    return tuple(int(part or 0) for part in match.groups()) if match else None


def version_problem() -> Optional[str]:
    """One line saying this ComfyUI is too old for the pack, or None (fine, or not inside ComfyUI)."""
    import sys

    if "folder_paths" not in sys.modules:  # not started by ComfyUI (tests, scripts)
        return None
    version = getattr(_module("comfyui_version"), "__version__", None)  # ComfyUI >= 0.3.11 has this module
    found = _version_tuple(version)
    if found is not None and found >= MIN_COMFYUI:
        return None
    minimum = ".".join(map(str, MIN_COMFYUI))
    return (f"fal Audio needs ComfyUI {minimum} or newer (async nodes); this is ComfyUI "
            f"{version or 'older than 0.3.11'}. Its nodes will fail to run: update ComfyUI "
            "(ComfyUI-Manager: Update ComfyUI; git: git pull; portable: update\\update_comfyui.bat) and restart.")
