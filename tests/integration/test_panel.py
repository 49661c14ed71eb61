"""Issue 21: the fal panel in the real editor (headless Chromium, the frontend ComfyUI pins and the newest one), on
a real ComfyUI talking to the fal emulator: its spend is the ledger's (with the fal Spend node's lines per worker
when another worker shares the books), its Cancel reaches fal for every take of the node run, a recent result
plays, "fetch again" makes no submit, and fal Result by Request ID gives the same audio with no submit."""

import contextlib
import itertools
import os
import shutil
import time

import pytest

from comfyui_harness import Events
from media import decode_audio
from support import PACK_DIR, defaults, pack_module

pytestmark = pytest.mark.integration

SCREENSHOT = PACK_DIR / "docs" / "screenshots" / "fal-panel.png"
_seeds = iter(range(9100, 9999, 7))


@pytest.fixture(params=["pinned", "newest"])
def ui(request):
    editor = request.getfixturevalue("editor" if request.param == "pinned" else "editor_newest")
    editor.clear()
    return editor


def lyria(seed: int, takes: int = 1, client: dict = None) -> dict:
    inputs = {"prompt": "slow ambient pads", "negative_prompt": "", "seed": seed, "takes": takes}
    prompt = {"1": {"class_type": "FalAudioLyria2", "inputs": inputs},
              "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/panel"}}}
    if client:  # a fal Client with its defaults: the same request, but a new node input for ComfyUI's cache
        prompt["3"] = {"class_type": "FalAudioClient", "inputs": client}
        inputs["fal_client"] = ["3", 0]
    return prompt


def run(server, prompt: dict) -> dict:
    events = Events(server)
    try:
        entry = server.history(server.queue(prompt, events.client_id))
    finally:
        events.close()
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry


def saved(server, entry: dict):
    (item,) = entry["outputs"]["2"]["audio"]
    return decode_audio(server.output_file(item))[0]


def books(server):
    return pack_module("money.journal").Journal(server.base / "user" / "fal-audio" / "journal.sqlite3")


def ledger_today(server) -> float:
    return books(server).spend_report()[1]


def another_worker_paid(server, usd: float) -> None:
    """A request another worker sharing these books paid today (its ledger row, as that worker books it)."""
    ledger, now = pack_module("money.ledger"), time.time()
    with contextlib.closing(books(server).store.connect()) as conn:
        conn.execute("INSERT INTO ledger (identity, endpoint, day, state, estimate_usd, cost_usd, created, updated,"
                     " worker) VALUES (?, 'fal-ai/lyria2', ?, ?, ?, ?, ?, ?, 'gpu-remote')",
                     (f"remote-{now}", ledger.today(), ledger.SETTLED, usd, usd, now, now))


def per_worker_lines(server) -> list:
    """The fal Spend node's lines per worker."""
    lines = books(server).spend_report()[0].split("Per worker, last 7 days:\n")[1].splitlines()
    return [line.strip() for line in itertools.takewhile(lambda line: line.startswith("  "), lines)]


def open_panel(editor):
    """Click the sidebar's fal tab (open it if it is closed) and wait for the panel's spend."""
    page = editor.page
    if not page.locator(".fal-panel .fal-today").count():
        page.locator(".fal-audio-tab-icon").first.click()
    page.wait_for_selector(".fal-panel .fal-today", timeout=15_000)


def reopen_panel(editor):
    page = editor.page
    page.locator(".fal-audio-tab-icon").first.click()  # closes it
    page.wait_for_selector(".fal-panel", state="detached", timeout=10_000)
    open_panel(editor)


def test_spend_in_flight_cancel_and_recent_results(ui, fal, pack_nodes, tmp_path):
    server, page = ui.server, ui.page
    money = pack_module("money.pricing").money
    first, second = next(_seeds), next(_seeds)
    submits = len(fal.submissions)
    original = run(server, lyria(first))
    run(server, lyria(second))
    run(server, lyria(first, client=defaults(pack_nodes["FalAudioClient"])))  # the same request: reused
    assert len(fal.submissions) == submits + 2
    another_worker_paid(server, 0.05)  # the books are shared with another worker: the panel has a line per worker
    reopen_panel(ui) if page.locator(".fal-panel").count() else open_panel(ui)
    today = ledger_today(server)
    assert page.locator(".fal-today b").inner_text() == f"Today {money(today)}"
    workers = per_worker_lines(server)
    assert len(workers) == 2 and any(line.startswith("gpu-remote: ") for line in workers)
    assert page.locator(".fal-worker").all_inner_texts() == workers

    # takes=2, running: both requests show in flight; the panel's Cancel reaches fal for each.
    fal.set_timing("fal-ai/lyria2", run_seconds=120.0)
    events = Events(server)
    cancels = len(fal.cancels)
    page.evaluate("() => { window.falPushes = []; window.comfyAPI.api.api.addEventListener('fal_audio.panel',"
                  " (event) => window.falPushes.push(event.detail)); }")
    try:
        prompt_id = server.queue(lyria(next(_seeds), takes=2), events.client_id)
        page.wait_for_function("() => document.querySelectorAll('.fal-request button').length === 2",
                               timeout=60_000)
        # The page hears the server's pushes over ComfyUI's websocket (it does not poll for them).
        assert page.evaluate("() => window.falPushes.some((p) => p.requests.length === 2)")
        ids = [fal.submissions[-2].request_id, fal.submissions[-1].request_id]
        shown = page.locator(".fal-request .fal-id").all_inner_texts()
        assert sorted(shown) == sorted(ids)
        assert page.locator(".fal-request").first.inner_text().count("take ") == 1
        page.wait_for_timeout(1500)  # the elapsed times tick
        path = ui.screenshot(tmp_path / "fal-panel.png")
        assert path.stat().st_size > 20_000, "the screenshot is (nearly) blank"
        if os.environ.get("FAL_AUDIO_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOT)
        page.locator(".fal-request button").first.click()
        entry = server.history(prompt_id, timeout=60)
        deadline = time.monotonic() + 10  # the last push (throttled) says nothing is in flight any more
        while time.monotonic() < deadline and not [m for m in events.messages if m["type"] == "fal_audio.panel"
                                                   and m["data"]["requests"] == []]:
            time.sleep(0.2)
    finally:
        events.close()
        fal.set_timing("fal-ai/lyria2")
    assert sorted(fal.cancels[cancels:]) == sorted(ids)
    pushed = [m["data"] for m in events.messages if m["type"] == "fal_audio.panel"]  # broadcast to every client
    assert any(len(p["requests"]) == 2 for p in pushed) and pushed[-1]["requests"] == []  # pushed, not polled
    assert all(p["spend"]["today"]["text"].startswith("$") for p in pushed)
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "cancelled from the fal panel" in errors[0]["exception_message"], entry["status"]
    page.wait_for_function("() => !document.querySelector('.fal-request')", timeout=15_000)

    # One request (the node's own task in ComfyUI's executor, no task per take): the same.
    fal.set_timing("fal-ai/lyria2", run_seconds=120.0)
    events = Events(server)
    try:
        prompt_id = server.queue(lyria(next(_seeds)), events.client_id)
        page.wait_for_function("() => document.querySelectorAll('.fal-request button').length === 1",
                               timeout=60_000)
        page.locator(".fal-request button").first.click()
        entry = server.history(prompt_id, timeout=60)
    finally:
        events.close()
        fal.set_timing("fal-ai/lyria2")
    assert fal.cancels[-1] == fal.submissions[-1].request_id
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and "cancelled from the fal panel" in errors[0]["exception_message"], entry["status"]
    assert run(server, lyria(next(_seeds)))  # the executor goes on as usual after it

    # A recent result plays: the audio element loads the kept file from the pack's route.
    request_id = fal.submissions[submits].request_id
    row = page.locator(".fal-result", has_text=request_id).first
    row.locator("button", has_text="Play").click()
    page.wait_for_function("(id) => [...document.querySelectorAll('.fal-result')].some(r => r.innerText.includes(id)"
                           " && r.querySelector('audio') && r.querySelector('audio').readyState >= 1)", arg=request_id,
                           timeout=15_000)
    assert row.locator("audio").evaluate("a => a.error === null && a.duration > 0")

    # Fetch again after the kept file was deleted: fal's copy comes back, nothing is submitted.
    (kept,) = (server.base / "output" / "fal-audio").glob(f"*{request_id}*")
    data = kept.read_bytes()
    kept.unlink()
    reopen_panel(ui)
    row = page.locator(".fal-result", has_text=request_id).first
    before = len(fal.submissions)
    row.locator("button", has_text="Fetch again").click()
    page.wait_for_function("() => document.querySelector('.fal-message').innerText.includes('no new charge')",
                           timeout=15_000)
    assert kept.read_bytes() == data and len(fal.submissions) == before

    # fal Result by Request ID: the same audio as the original run, with no submit.
    entry = run(server, {"1": {"class_type": "FalAudioResultByRequestID",
                               "inputs": {"endpoint_id": "fal-ai/lyria2", "request_id": request_id}},
                         "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0],
                                                                     "filename_prefix": "audio/by-id"}}})
    assert saved(server, entry).tolist() == saved(server, original).tolist()
    assert len(fal.submissions) == before
    assert ui.pack_problems() == [] and ui.page_errors() == []
    # Quiet logs: none of the pack's requests added httpx's "HTTP Request: ..." line to ComfyUI's log.
    assert [line for line in server.log().splitlines() if "HTTP Request:" in line] == []

