"""Test harness: load the pack the way ComfyUI does, fake the bits of ComfyUI it hooks
into, and point the real fal_client at a local fal emulator (proxy + test CA)."""

import asyncio
import importlib
import importlib.util
import logging
import sys
import types
from pathlib import Path

import pytest

from fal_emulator import FalEmulator

PACK_DIR = Path(__file__).resolve().parent.parent
# A folder name with hyphens, as users clone it: only relative imports can work.
PACK_NAME = "comfyui-fal-audio-under-test"
# A canary key: if this string shows up in any output, log, error or file, it leaked.
CANARY_KEY = "c4nary00-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"


def load_pack():
    """Import the pack exactly as ComfyUI's load_custom_node does."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, PACK_DIR / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def pack_module(name: str):
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{name}")


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


class FakeComfy:
    """The parts of ComfyUI the pack calls: interrupt flag, progress bar/text, folders."""

    def __init__(self, root: Path):
        self.interrupt_requested = False
        self.progress_texts = []
        self.progress_values = []
        self.output_dir = root / "output"
        self.user_dir = root / "user"
        fake = self

        class InterruptProcessingException(Exception):
            pass

        def throw_exception_if_processing_interrupted():
            if fake.interrupt_requested:
                fake.interrupt_requested = False  # ComfyUI clears the flag when it raises
                raise InterruptProcessingException()

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                fake.progress_values.append(value)

        class PromptServerInstance:
            def send_progress_text(self, text, node_id):
                fake.progress_texts.append((node_id, text))

        self.InterruptProcessingException = InterruptProcessingException
        comfy = types.ModuleType("comfy")
        model_management = types.ModuleType("comfy.model_management")
        model_management.InterruptProcessingException = InterruptProcessingException
        model_management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
        utils = types.ModuleType("comfy.utils")
        utils.ProgressBar = ProgressBar
        comfy.model_management, comfy.utils = model_management, utils
        server = types.ModuleType("server")
        server.PromptServer = type("PromptServer", (), {"instance": PromptServerInstance()})
        folder_paths = types.ModuleType("folder_paths")
        folder_paths.get_output_directory = lambda: str(self.output_dir)
        folder_paths.get_user_directory = lambda: str(self.user_dir)
        self.modules = {"comfy": comfy, "comfy.model_management": model_management, "comfy.utils": utils,
                        "server": server, "folder_paths": folder_paths}

    def interrupt(self):
        self.interrupt_requested = True

    def texts(self):
        return [text for _, text in self.progress_texts]


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    fake = FakeComfy(tmp_path / "ComfyUI")
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return fake


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory):
    emulator = FalEmulator(key=CANARY_KEY, workdir=tmp_path_factory.mktemp("fal-emulator"))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def fal(emulator_session, monkeypatch, tmp_path, comfy):
    """A clean emulator, the client environment pointing at it, and a private data/output dir."""
    emulator_session.reset()
    emulator_session.set_key(CANARY_KEY)
    for name, value in emulator_session.client_env().items():
        monkeypatch.setenv(name, value)
    for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AUDIO_CREDENTIALS", "FAL_AUDIO_OUTPUT_DIR",
                 "FAL_AUDIO_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield emulator_session


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


@pytest.fixture
def captured_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog
