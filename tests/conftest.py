"""Test harness: load the pack the way ComfyUI does, fake the bits of ComfyUI it hooks
into, and point the real fal_client at a local fal emulator (proxy + test CA)."""

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

# The tests live in folders by package (tests/core, tests/media, ...); their shared modules (support, the fal
# emulator) at the top of tests/, importable from every folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from emulator_models import FakeVideo  # noqa: E402
from fal_emulator import FalEmulator  # noqa: E402
from pg_server import PostgresServer  # noqa: E402
from support import CANARY_KEY, load_pack, pack_module  # noqa: E402

# The tests never touch a database of the user's: the `postgres` fixture sets its own.
os.environ.pop("FAL_AUDIO_DATABASE_URL", None)


def pytest_collection_modifyitems(config, items):
    """Mark every test that talks to the fal emulator `emulator`: what is left unmarked (and not `integration`)
    is the fast tier, `pytest -m "not emulator and not integration"`. Under pytest-xdist (`-n 2 --dist
    loadgroup`) the integration tests share one worker: each worker would otherwise start its own ComfyUI."""
    parallel = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if "emulator_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.emulator)
        if parallel and item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.xdist_group("comfyui"))


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
        comfy_api = types.ModuleType("comfy_api")
        comfy_api.input_impl = input_impl = types.ModuleType("comfy_api.input_impl")
        input_impl.VideoFromFile = FakeVideo
        self.modules = {"comfy": comfy, "comfy.model_management": model_management, "comfy.utils": utils,
                        "server": server, "folder_paths": folder_paths, "comfy_api": comfy_api,
                        "comfy_api.input_impl": input_impl}

    def interrupt(self):
        self.interrupt_requested = True

    def cancel_once_submitted(self, fal, delay: float = 0.3) -> dict:
        """Press Cancel, from another thread, `delay` seconds after fal has a request. Returns a dict that
        holds the monotonic time of the press under "at"."""
        import threading
        import time

        pressed = {}

        def press():
            while not fal.submissions:
                time.sleep(0.01)
            time.sleep(delay)
            self.interrupt()
            pressed["at"] = time.monotonic()

        threading.Thread(target=press, daemon=True).start()
        return pressed

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
    # The emulator plays fal's file hosts on 127.0.0.1, whose names do not resolve here: Load Audio from
    # URL may reach it. Tests of the network rules (test_netguard.py) unset this.
    monkeypatch.setenv("FAL_AUDIO_ALLOW_PRIVATE_URLS", "1")
    # No pricing-API outage nor new-id budget remembered from an earlier test (a refused key marks the API down
    # for a while; the price cache itself lives in each test's data dir).
    pricing = pack_module("money.pricing")
    monkeypatch.setattr(pricing, "_api_down_until", 0.0)
    monkeypatch.setattr(pricing, "_new_ids_asked", type(pricing._new_ids_asked)())
    yield emulator_session


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server (tests/pg_server.py) for this test process. Skipped where none can
    start, except in CI (CI=true), where that is a failure."""
    server = PostgresServer()
    try:
        import psycopg  # noqa: F401 - the pack's driver for it (requirements-test.txt)

        server.start()
    except (ImportError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.remove()
        why = f"no PostgreSQL server for the shared-database tests: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)
    yield server
    server.remove()


@pytest.fixture
def postgres(postgres_server, monkeypatch):
    """The pack's books on the test server (FAL_AUDIO_DATABASE_URL), in an empty database; returns its URL."""
    url = postgres_server.empty_books()
    monkeypatch.setenv("FAL_AUDIO_DATABASE_URL", url)
    pack_module("money.journal").forget_open()
    yield url
    pack_module("money.journal").forget_open()


@pytest.fixture
def captured_logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog
