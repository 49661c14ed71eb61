"""Issue 13: the pack at scale. Declaring nodes stays cheap however many there are, a fal
result chained into another fal node is sent by fal's own URL (no upload), and many
requests run at once up to a pack-wide cap."""

import json
import subprocess
import sys

from support import PACK_DIR

# What ComfyUI has loaded, and what the pack may only import when a node runs.
HEAVY = ("torch", "numpy", "av", "httpx", "fal_client", "sqlite3", "xxhash", "PIL", "trustme", "certifi")


def test_declaring_the_nodes_imports_nothing_heavy():
    """Import the pack as ComfyUI does (hyphenated folder name) and list the nodes' inputs,
    as ComfyUI's /object_info does: none of the heavy modules is imported, whatever nodes
    are registered (every registered class is covered, including ones added later)."""
    code = (
        "import asyncio, json, logging, importlib.util, sys\n"  # what ComfyUI has loaded (not torch: see below)
        "before = set(sys.modules)\n"
        f"spec = importlib.util.spec_from_file_location('fal-audio-light', r'{PACK_DIR / '__init__.py'}')\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['fal-audio-light'] = m; spec.loader.exec_module(m)\n"
        "after_import = sorted(n for n in set(sys.modules) - before if n.split('.')[0] in HEAVY)\n"
        "for cls in m.NODE_CLASS_MAPPINGS.values():\n"
        "    cls.INPUT_TYPES(); cls.RETURN_TYPES; cls.FUNCTION\n"
        "after_inputs = sorted(n for n in set(sys.modules) - before if n.split('.')[0] in HEAVY)\n"
        "print(json.dumps([len(m.NODE_CLASS_MAPPINGS), after_import, after_inputs]))\n"
    )
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + code], capture_output=True, text=True,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    count, after_import, after_inputs = json.loads(out.stdout)
    assert count >= 18
    assert after_import == [], f"importing the pack imported {after_import}"
    assert after_inputs == [], f"listing the nodes' inputs imported {after_inputs}"
