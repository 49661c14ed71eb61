"""Issue 20 item 6 measured in a real ComfyUI v0.21.0 with the whole catalog: how long GET /object_info takes (what
the editor asks for when it opens, and when the node library is refreshed), the first time after a start (the
catalog file is parsed then) and again, against the 0.3 s target; and the pack's share of it (every pack node's
INPUT_TYPES, in a fresh process).

    python bench/object_info.py [--runs N]

Run it in the test environment (the README's `.venv`); like the integration tests it sets ComfyUI up from
../shared/comfyui and starts it headless with this pack linked into custom_nodes (no fal call is made).
Prints the table rows (as bench/run.py's) on stdout; exit status 0 when it measured.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from comfyui_harness import ComfyUI, setup_comfyui  # noqa: E402

TARGET_S = 0.3
PACK_SHARE = """
import sys, time
sys.path.insert(0, {tests!r})
from support import load_pack
nodes = load_pack().NODE_CLASS_MAPPINGS
started = time.perf_counter()
for cls in nodes.values():
    cls.INPUT_TYPES()
print(time.perf_counter() - started, len(nodes))
"""


def timed_get(server: ComfyUI, path: str) -> float:
    started = time.perf_counter()
    server.get(path)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    main_py = setup_comfyui()
    with tempfile.TemporaryDirectory(prefix="fal-audio-object-info-") as base:
        server = ComfyUI(main_py, Path(base), {}).start()
        try:
            first = timed_get(server, "/object_info")
            again = [timed_get(server, "/object_info") for _ in range(args.runs)]
            count = sum(1 for name in server.get("/object_info") if name.startswith("FalAudio"))
        finally:
            server.stop()
    share = subprocess.run([sys.executable, "-c", PACK_SHARE.format(tests=str(ROOT / "tests"))], capture_output=True,
                           text=True, check=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    seconds, nodes = share.stdout.split()
    rows = [(f"GET /object_info, first after start ({count} pack nodes)", first),
            (f"GET /object_info again (median of {args.runs})", statistics.median(again)),
            (f"the pack's share: INPUT_TYPES of its {nodes} nodes, first time (fresh process)", float(seconds))]
    for label, value in rows:
        print(f"| {label} | {value:.3f} s | target ≤ {TARGET_S} s | {value / TARGET_S:.2f} | "
              f"{'PASS' if value <= TARGET_S else 'FAIL'} |")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
