"""Saved workflows keep loading: every node class, its inputs (name, type, default, range, options) and its outputs
are exactly those of tests/nodes/snapshots/nodes.json. A workflow stores widget values by position and links by
input and output name, so a renamed, reordered, removed or retyped input (or output), or a changed default, breaks
the workflows users have saved.

After a deliberate, compatible change (a new optional input at the end, a new node), rewrite the snapshot with
`python tests/nodes/test_node_snapshot.py` and review its diff.
"""

import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "nodes.json"
KEPT = ("default", "min", "max", "step", "multiline")


def declared(nodes) -> dict:
    shot = {}
    for name, cls in sorted(nodes.items()):
        spec = cls.INPUT_TYPES()
        inputs = []
        for section in ("required", "optional", "hidden"):
            for input_name, declaration in (spec.get(section) or {}).items():
                kind = declaration[0] if isinstance(declaration, (tuple, list)) else declaration
                options = declaration[1] if isinstance(declaration, (tuple, list)) and len(declaration) > 1 else {}
                inputs.append([section, input_name, kind if isinstance(kind, str) else list(kind),
                               {k: options[k] for k in KEPT if k in options}])
        shot[name] = {"inputs": inputs, "returns": [list(cls.RETURN_TYPES), list(getattr(cls, "RETURN_NAMES", ()))]}
    return shot


def test_every_class_input_and_output_is_as_saved_workflows_know_it(nodes):
    saved = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(declared(nodes)))
    gone = sorted(set(saved) - set(now))
    assert not gone, f"node classes gone (saved workflows using them no longer load): {gone}"
    changed = {name: {"saved": saved[name], "now": now[name]} for name in saved if saved[name] != now[name]}
    assert not changed, json.dumps(changed, indent=1)[:4000]
    assert set(now) == set(saved), f"new node classes: add them with `python {Path(__file__).name}`: " \
                                   f"{sorted(set(now) - set(saved))}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from support import load_pack

    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(declared(load_pack().NODE_CLASS_MAPPINGS), indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
