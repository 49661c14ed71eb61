"""Loading the pack as ComfyUI does and calling its nodes as ComfyUI's executor does.

Shared by the tests and by bench/run.py; needs no pytest.
"""

import asyncio
import importlib
import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
# A folder name with hyphens, as users clone it: only relative imports can work.
PACK_NAME = "comfyui-fal-audio-under-test"
# A canary key: if this string shows up in any output, log, error or file, it leaked.
CANARY_KEY = "c4nary00-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"


def load_pack(name: str = PACK_NAME):
    """Import the pack exactly as ComfyUI's load_custom_node does."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pack_module(name: str, package: str = PACK_NAME):
    load_pack(package)
    return importlib.import_module(f"{package}.{name}")


def curated(nodes) -> set:
    """The class names of the curated model nodes (declared in data/nodes/*.json, rendered by nodes/spec.py)."""
    return {name for name, cls in nodes.items() if cls.__module__.endswith(".nodes.spec")}


def script_module(relative: str):
    """A script of the repository (e.g. "bench/remote_emulator.py") loaded as a module by its path."""
    path = PACK_DIR / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_dns(monkeypatch, answers: dict) -> dict:
    """The network guard's resolver answers `answers` (host -> a list of addresses, or a function giving one)
    before the real resolver; the dict stays live, so a test may add hosts later."""
    netguard = pack_module("media.netguard")
    real = netguard.resolve

    async def resolve(host, port):
        if host in answers:
            value = answers[host]
            return value() if callable(value) else list(value)
        return await real(host, port)

    monkeypatch.setattr(netguard, "resolve", resolve)
    return answers


def run_node(node_class, **inputs):
    """Call a node's FUNCTION as ComfyUI's executor does (awaiting it if it is async)."""
    node = node_class()
    result = getattr(node, node_class.FUNCTION)(**inputs)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return result


def defaults(node_class, **overrides):
    """The widget defaults of a node, as a fresh node in the editor would send them."""
    values = {}
    spec = node_class.INPUT_TYPES()
    for name, (kind, *options) in spec["required"].items():
        opts = options[0] if options else {}
        if isinstance(kind, list):
            values[name] = opts.get("default", kind[0])
        elif "default" in opts:
            values[name] = opts["default"]
    values.update(overrides)
    return values


# Lyria 2 is the plainest paid node: the money-safety tests run it, and steer the emulator by these patterns.
LYRIA = "FalAudioLyria2"
SUBMIT = r"queue\.fal\.run/fal-ai/lyria2$"
RESULT = r"queue\.fal\.run/fal-ai/lyria2/requests/[^/]+$"
FILES = r"v3\.fal\.media/files/"


def lyria(nodes, prompt: str = "money test", unique_id: str = "1", **inputs):
    """Run the Lyria 2 node with its defaults, as ComfyUI would."""
    return run_node(nodes[LYRIA], unique_id=unique_id, **defaults(nodes[LYRIA], prompt=prompt, **inputs))
