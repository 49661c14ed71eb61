"""The pack's modules for the scripts beside this file, imported as ComfyUI imports them (under a package name,
relative imports inside) without running the pack's __init__ (its version check, the node mappings)."""

import importlib
import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
PACKAGE = "fal_audio_scripts"


def pack(name: str):
    """A module of the pack, e.g. pack("money.journal")."""
    if PACKAGE not in sys.modules:
        found = importlib.util.spec_from_file_location(PACKAGE, PACK_DIR / "__init__.py",
                                                       submodule_search_locations=[str(PACK_DIR)])
        sys.modules[PACKAGE] = importlib.util.module_from_spec(found)
    return importlib.import_module(f"{PACKAGE}.{name}")
