"""Fixtures of the integration tests: a real ComfyUI started once per session (one with the frontend ComfyUI
pins, one with the newest frontend, started only when a test asks for it), the fal emulator it talks to, and a
headless Chromium."""

import os

import pytest

from comfyui_harness import ComfyUI, missing_prerequisite, newest_frontend, setup_comfyui
from emulator_models import serve_every_model
from support import load_pack


@pytest.fixture(scope="session")
def comfyui_main():
    reason = missing_prerequisite()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"integration tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return setup_comfyui()


@pytest.fixture(scope="session")
def pack_nodes():
    return load_pack().NODE_CLASS_MAPPINGS


@pytest.fixture(scope="session")
def fal(emulator_session, pack_nodes):
    """The emulator the ComfyUI servers talk to, answering every model of the pack like the real service.
    Never reset while they run: like fal, it keeps the files a server uploaded (a server reuses an upload's URL),
    so the tests count the requests each of them adds."""
    emulator_session.reset()
    serve_every_model(emulator_session, pack_nodes)
    return emulator_session


def _start(tmp_path_factory, main, emulator, name, frontend=None):
    server = ComfyUI(main, tmp_path_factory.mktemp(name), emulator.client_env(), frontend=frontend)
    server.start()
    return server


@pytest.fixture(scope="session")
def server(comfyui_main, fal, tmp_path_factory):
    """ComfyUI v0.21.0 with the frontend it pins."""
    server = _start(tmp_path_factory, comfyui_main, fal, "comfyui")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_newest(comfyui_main, fal, tmp_path_factory):
    """The same ComfyUI started with comfyui-frontend-package 1.58.1 first on PYTHONPATH."""
    server = _start(tmp_path_factory, comfyui_main, fal, "comfyui-newest", frontend=newest_frontend())
    yield server
    server.stop()


# Playwright's sync API keeps an asyncio loop running in this thread while it is open, and the unit tests
# call asyncio.run(): so the browser lives per module, never across the whole session.
@pytest.fixture(scope="module")
def browser(comfyui_main):
    from playwright.sync_api import sync_playwright

    from editor import launch

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def editor(browser, server):
    from editor import Editor

    editor = Editor(browser, server)
    yield editor
    editor.close()


@pytest.fixture(scope="module")
def editor_newest(browser, server_newest):
    from editor import Editor

    editor = Editor(browser, server_newest)
    yield editor
    editor.close()
