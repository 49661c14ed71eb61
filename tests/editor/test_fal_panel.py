"""The editor's fal panel (editor/panel.py, jobs/live.py): its spend is the ledger's to the cent, it lists the
requests in flight and cancels them on fal, it lists and serves kept results, and it refuses every bad input."""

import asyncio
import json
import logging
import threading
import time

import pytest

from support import defaults, lyria, pack_module, run_node


@pytest.fixture
def panel():
    return pack_module("editor.panel")


@pytest.fixture
def live():
    return pack_module("jobs.live")


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def spend_node(nodes):
    return run_node(nodes["FalAudioSpend"], unique_id="9")["result"]


def body(**values):
    return json.dumps(values).encode()


# --- spend -------------------------------------------------------------------------------------------------

def test_spend_is_the_ledger_report_to_the_cent(fal, nodes, comfy, panel, short_file, monkeypatch):
    monkeypatch.setenv("FAL_AUDIO_DAILY_LIMIT_USD", "1.5")
    lyria(nodes, seed=1)
    lyria(nodes, seed=2)
    lyria(nodes, seed=1)  # reused: $0
    cls = nodes["FalAudioAceStep"]
    fal.set_handler("fal-ai/ace-step", lambda payload: fal.file_result(seconds=10.0, rate=8000, channels=1))
    run_node(cls, unique_id="8", **defaults(cls, tags="lofi", duration=10.0))
    report, today_usd = spend_node(nodes)
    spend = asyncio.run(panel.spend())
    assert spend["today"]["usd"] == today_usd == pytest.approx(0.202)
    assert f"Today ({spend['today']['day']}): {spend['today']['text']} in 3 paid requests" in report
    assert spend["limit"]["source"] == "FAL_AUDIO_DAILY_LIMIT_USD"
    assert f"Daily limit: {spend['limit']['text']}, {spend['limit']['left_text']} left today" in report
    assert spend["limit"]["left_usd"] == pytest.approx(1.5 - 0.202)
    for model in spend["models"]:
        assert f"  {model['endpoint']}: {model['text']} in {model['paid']} paid" in report
    lyria_row = next(m for m in spend["models"] if m["endpoint"] == "fal-ai/lyria2")
    assert (lyria_row["paid"], lyria_row["free"]) == (2, 1)
    assert lyria_row["price"]["source"].startswith("fal API") and lyria_row["price"]["fetched"]
    assert len(spend["days"]) == 30 and spend["days"][-1] == {"day": spend["today"]["day"], "usd": today_usd,
                                                               "text": spend["today"]["text"]}
    assert sum(day["usd"] for day in spend["days"]) == pytest.approx(today_usd)


def test_the_limit_of_the_newest_runs_fal_client_is_the_panels(fal, nodes, comfy, panel, short_file):
    cls = nodes["FalAudioClient"]
    (options,) = run_node(cls, **defaults(cls, daily_spend_limit_usd=2.0))
    lyria(nodes, fal_client=options)
    spend = asyncio.run(panel.spend())
    assert (spend["limit"]["usd"], spend["limit"]["source"]) == (2.0, "the fal Client of the newest run")
    assert spend["limit"]["left_text"] == "$1.90"


@pytest.mark.parametrize("home", ["sqlite", "postgres"])
def test_spend_has_the_spend_nodes_per_worker_lines_once_two_workers_have_booked(fal, nodes, comfy, panel, short_file,
                                                                                request, home, monkeypatch):
    if home == "postgres":
        request.getfixturevalue("postgres")
    journal = pack_module("money.journal")
    monkeypatch.setattr(journal, "WORKER", "gpu-1")
    lyria(nodes, seed=1)
    assert asyncio.run(panel.spend())["workers"] == [] and "Per worker" not in spend_node(nodes)[0]
    monkeypatch.setattr(journal, "WORKER", "gpu-2")  # a second worker on the same books
    lyria(nodes, seed=2)
    lyria(nodes, seed=3)
    lyria(nodes, seed=1)  # reused by gpu-2: $0
    report, _ = spend_node(nodes)
    workers = asyncio.run(panel.spend())["workers"]
    assert [(w["worker"], w["paid"]) for w in workers] == [("gpu-2", 2), ("gpu-1", 1)]
    assert [w["usd"] for w in workers] == [w["today_usd"] for w in workers] == [pytest.approx(0.2), pytest.approx(0.1)]
    lines = report.split("Per worker, last 7 days:\n")[1].splitlines()[:2]
    assert lines == [f"  {w['worker']}: {w['text']} in {w['paid']} paid, today {w['today_text']}" for w in workers]
    assert lines[0] == "  gpu-2: $0.20 in 2 paid, today $0.20"


# --- recent results, play, fetch again -----------------------------------------------------------------------

def test_recent_lists_paid_and_reused_results_newest_first(fal, nodes, comfy, panel, short_file):
    lyria(nodes, seed=1)
    lyria(nodes, seed=2)
    lyria(nodes, seed=1)
    results = panel.recent()["results"]
    first, second = fal.submissions[0].request_id, fal.submissions[1].request_id
    assert [(r["request_id"], r["reused"], r["cost_text"]) for r in results] == [
        (first, True, "$0"), (second, False, "$0.10"), (first, False, "$0.10")]
    assert all(r["kept"] and r["seconds"] == pytest.approx(1.0) and r["outputs"] == ["audio"] for r in results)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus"])
def test_recent_shows_the_length_of_a_kept_file_of_any_format(fal, nodes, comfy, panel, fmt):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=3.0, rate=48000, channels=2, fmt=fmt))
    lyria(nodes)
    (result,) = panel.recent()["results"]
    assert result["kept"] and result["seconds"] == pytest.approx(3.0, abs=0.1)


def test_play_serves_the_kept_file_only(fal, nodes, comfy, panel, short_file, tmp_path):
    lyria(nodes)
    request_id = fal.submissions[0].request_id
    status, path = panel.play(request_id)
    assert status == 200 and path.read_bytes()[:4] == b"RIFF" and comfy.output_dir in path.parents
    assert panel.play("../../etc/passwd")[0] == 400
    assert panel.play("not an id")[0] == 400
    assert panel.play("a" * 200)[0] == 400
    assert panel.play("0000aaaa-unknown")[0] == 404
    assert panel.play(request_id, "vocals")[0] == 404
    # A journal row whose file lies outside the kept-results folders is never served.
    outside = tmp_path / "secret.wav"
    outside.write_bytes(path.read_bytes())
    book = pack_module("money.journal").current()
    book._connect().execute("UPDATE requests SET files=? WHERE request_id=?",
                            (json.dumps({"audio": str(outside)}), request_id))
    status, error = panel.play(request_id)
    assert status == 403 and "outside the pack's kept-results folders" in error["error"]
    link = comfy.output_dir / "fal-audio" / "link.wav"
    link.symlink_to(outside)  # a link inside pointing outside is resolved first
    book._connect().execute("UPDATE requests SET files=? WHERE request_id=?",
                            (json.dumps({"audio": str(link)}), request_id))
    assert panel.play(request_id)[0] == 403


def test_fetch_again_downloads_fals_copy_without_a_submit(fal, nodes, comfy, panel, short_file):
    lyria(nodes)
    request_id = fal.submissions[0].request_id
    status, path = panel.play(request_id)
    original = path.read_bytes()
    path.unlink()
    assert panel.play(request_id)[0] == 404
    assert not panel.recent()["results"][0]["kept"]
    status, answer = asyncio.run(panel.fetch_again(request_id))
    assert status == 200 and answer["fetched"] == ["audio"] and "no new charge" in answer["message"]
    assert path.read_bytes() == original and len(fal.submissions) == 1
    status, answer = asyncio.run(panel.fetch_again(request_id))
    assert status == 200 and answer["fetched"] == [] and "nothing to fetch" in answer["message"]
    assert asyncio.run(panel.fetch_again("0000aaaa-unknown"))[0] == 404


def test_fetch_again_says_when_fal_no_longer_has_the_file(fal, nodes, comfy, panel, short_file):
    lyria(nodes)
    request_id = fal.submissions[0].request_id
    path = panel.play(request_id)[1]
    path.unlink()
    fal.remove_file(fal.job(request_id).result["audio"]["url"])  # fal's copy expired
    status, answer = asyncio.run(panel.fetch_again(request_id))
    assert status == 410 and "fal no longer has the result of request" in answer["error"]
    assert not path.exists() and len(fal.submissions) == 1


@pytest.mark.parametrize("raw, status, words", [
    (b"x" * 5000, 413, "too large"),
    (b"not json", 400, "expected JSON"),
    (b"[1, 2]", 400, "expected JSON"),
    (b'{"request_id": 5}', 400, "expected JSON"),
    (b'{"request_id": "../../x"}', 400, "not a fal request id"),
    (b'{"request_id": "abc def 123"}', 400, "not a fal request id"),
    (b'{"request_id": "0000aaaa-unknown"}', 404, "not in flight"),
])
def test_cancel_refuses_bad_bodies(fal, panel, raw, status, words):
    answer = asyncio.run(panel.cancel(raw))
    assert answer[0] == status and words in answer[1]["error"]


def test_cancel_refuses_a_request_that_is_no_longer_in_flight(fal, nodes, comfy, panel, short_file):
    lyria(nodes)
    answer = asyncio.run(panel.cancel(body(request_id=fal.submissions[0].request_id)))
    assert answer[0] == 404 and "not in flight" in answer[1]["error"] and fal.cancels == []


# --- in flight and cancel ---------------------------------------------------------------------------------

def test_two_takes_in_flight_and_the_panels_cancel_stops_both_on_fal(fal, nodes, comfy, panel, live, short_file):
    fal.set_timing("fal-ai/lyria2", run_seconds=30.0)
    events = []
    live.listen(events.append)
    outcome = {}

    def run():
        try:
            lyria(nodes, takes=2, unique_id="17")
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        flying = panel.inflight()["requests"]
        if len(flying) == 2 and all(r["request_id"] and r["state"] == "running" for r in flying):
            break
        time.sleep(0.05)
    assert sorted(r["take"] for r in flying) == ["take 1/2", "take 2/2"]
    assert {r["request_id"] for r in flying} == {s.request_id for s in fal.submissions}
    assert all(r["endpoint"] == "fal-ai/lyria2" and r["node_id"] == "17" and r["estimate_usd"] == pytest.approx(0.1)
               for r in flying)
    status, answer = asyncio.run(panel.cancel(body(request_id=flying[0]["request_id"])))
    worker.join(20)
    assert status == 200 and sorted(answer["cancelling"]) == sorted(r["request_id"] for r in flying)
    assert sorted(fal.cancels) == sorted(r["request_id"] for r in flying)
    error = outcome["error"]
    assert type(error).__name__ == "CancelledFromPanel" and "cancelled from the fal panel" in str(error)
    assert panel.inflight()["requests"] == []
    assert "started" in events and "changed" in events and "ended" in events
    assert comfy.texts()[-1].startswith("Cancelled after ") and "$0 paid" in comfy.texts()[-1]
    assert asyncio.run(panel.spend())["today"]["usd"] == 0
    details = pack_module("money.journal").current()._connect().execute(
        "SELECT state, detail FROM ledger").fetchall()
    assert details == [("unpaid", "failed or cancelled: cancelled from the fal panel")] * 2


def test_a_request_waiting_for_a_slot_shows_as_waiting_without_an_id(fal, nodes, comfy, panel, short_file):
    fal.set_timing("fal-ai/lyria2", run_seconds=30.0)
    cls = nodes["FalAudioClient"]
    (options,) = run_node(cls, **defaults(cls, max_concurrent_requests=1))
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("error", _raises(
        lambda: lyria(nodes, takes=2, fal_client=options))))
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = sorted((r["state"], bool(r["request_id"])) for r in panel.inflight()["requests"])
        if states == [("running", True), ("waiting for a slot", False)]:
            break
        time.sleep(0.05)
    assert states == [("running", True), ("waiting for a slot", False)]
    running = next(r for r in panel.inflight()["requests"] if r["request_id"])
    status, answer = asyncio.run(panel.cancel(body(request_id=running["request_id"])))
    worker.join(20)
    assert status == 200 and answer["cancelling"] == [running["request_id"]]  # the waiting take has no id yet
    assert fal.cancels == [running["request_id"]] and len(fal.submissions) == 1  # the waiting take never went out
    assert "cancelled from the fal panel" in str(outcome["error"])


def _raises(call):
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test reads it
        return exc
    return None


def test_a_run_with_one_request_ends_with_the_panels_message(fal, nodes, comfy, panel, short_file):
    fal.set_timing("fal-ai/lyria2", run_seconds=30.0)
    outcome = {}

    def run():
        try:
            lyria(nodes)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    while not (panel.inflight()["requests"] and panel.inflight()["requests"][0]["request_id"]):
        time.sleep(0.05)
    request_id = panel.inflight()["requests"][0]["request_id"]
    assert asyncio.run(panel.cancel(body(request_id=request_id)))[0] == 200
    worker.join(20)
    assert fal.cancels == [request_id] and "cancelled from the fal panel" in str(outcome["error"])


def test_pushed_events_are_throttled(panel, comfy):  # comfy: the books in a folder of the test's own
    sent = []

    class Instance:
        loop = None

        def send_sync(self, event, data):
            sent.append((event, data))

    async def burst():
        instance = Instance()
        instance.loop = asyncio.get_running_loop()
        pusher = panel.Pusher(instance)
        for _ in range(50):
            pusher.changed("changed")
        await asyncio.sleep(panel.PUSH_EVERY * 1.5)

    panel.PUSH_EVERY, saved = 0.2, panel.PUSH_EVERY
    try:
        asyncio.run(burst())
    finally:
        panel.PUSH_EVERY = saved
    assert len(sent) == 1 and sent[0][0] == "fal_audio.panel" and set(sent[0][1]) == {"requests", "spend"}


# --- quiet logs --------------------------------------------------------------------------------------------

def test_the_packs_requests_leave_no_httpx_lines_and_others_still_do(fal, nodes, comfy, short_file, caplog):
    import httpx

    caplog.set_level(logging.INFO, logger="httpx")
    lyria(nodes)
    assert fal.submissions and not [r for r in caplog.records if r.name == "httpx"]
    assert logging.getLogger("httpx").level in (logging.NOTSET, logging.INFO)
    with httpx.Client(verify=False) as client:  # another pack's request, outside the pack's calls
        client.get(f"https://queue.fal.run/fal-ai/lyria2/requests/{fal.submissions[0].request_id}")
    assert [r for r in caplog.records if r.name == "httpx" and r.getMessage().startswith("HTTP Request:")]


# --- the routes on an aiohttp server, as ComfyUI serves them -------------------------------------------------

def serve(panel, calls):
    """Run `calls(client)` against the panel's routes on a real aiohttp server."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    async def main():
        instance = type("Instance", (), {"routes": web.RouteTableDef(), "loop": None,
                                         "send_sync": lambda self, event, data: None})()
        panel.register(instance)
        app = web.Application()
        app.add_routes(instance.routes)
        async with TestClient(TestServer(app)) as client:
            return await calls(client)

    return asyncio.run(main())


def test_routes_answer_json_and_refuse_bad_input(fal, nodes, comfy, panel, short_file):
    from support import CANARY_KEY

    lyria(nodes)
    request_id = fal.submissions[0].request_id

    async def calls(client):
        answers = {}
        for name in ("spend", "inflight", "recent"):
            response = await client.get(f"/fal_audio/panel/{name}")
            answers[name] = (response.status, await response.text())
        response = await client.get(f"/fal_audio/panel/play/{request_id}")
        answers["play"] = (response.status, await response.read())
        for path in ("..%2F..%2Fetc%2Fpasswd", "x", "%00aaaaaaaaa"):
            response = await client.get(f"/fal_audio/panel/play/{path}")
            answers[path] = (response.status, await response.json())
        huge = b'{"request_id": "' + b"a" * 100_000 + b'"}'
        response = await client.post("/fal_audio/panel/cancel", data=huge)
        answers["huge"] = (response.status, await response.json())

        async def chunks():  # no Content-Length: the body is read no further than the limit
            for _ in range(10):
                yield b"a" * 1000

        response = await client.post("/fal_audio/panel/fetch-again", data=chunks())
        answers["chunked"] = (response.status, await response.json())
        response = await client.post("/fal_audio/panel/fetch-again", data=b"{")
        answers["broken"] = (response.status, await response.json())
        return answers

    answers = serve(panel, calls)
    assert all(answers[name][0] == 200 and CANARY_KEY.split(":")[0] not in answers[name][1]
               for name in ("spend", "inflight", "recent"))
    assert json.loads(answers["spend"][1])["today"]["text"] == "$0.10"
    assert answers["play"][0] == 200 and answers["play"][1][:4] == b"RIFF"
    for path in ("..%2F..%2Fetc%2Fpasswd", "x", "%00aaaaaaaaa"):
        assert answers[path][0] == 400 and "not a fal request id" in answers[path][1]["error"]
    assert answers["huge"][0] == 413 and answers["chunked"][0] == 413
    assert answers["broken"] == (400, {"error": 'expected JSON: {"request_id": "<fal request id>"}'})


def test_a_failing_route_answers_json_without_a_stack_trace(fal, comfy, panel, monkeypatch):
    from support import CANARY_KEY

    def broken(*where):
        raise OSError(f"disk gone near {CANARY_KEY}")

    monkeypatch.setattr(pack_module("money.journal"), "current", broken)

    async def calls(client):
        response = await client.get("/fal_audio/panel/spend")
        return response.status, await response.json()

    status, answer = serve(panel, calls)
    assert status == 500 and answer["error"].startswith("the fal panel could not answer (OSError: disk gone near")
    assert CANARY_KEY not in answer["error"] and "Traceback" not in answer["error"]


@pytest.mark.parametrize("home", ["sqlite", "postgres"])
def test_spend_recent_and_a_result_fetched_by_id_on_both_homes_of_the_books(fal, nodes, comfy, panel, short_file,
                                                                             request, home):
    import httpx

    from support import CANARY_KEY

    if home == "postgres":
        request.getfixturevalue("postgres")
    lyria(nodes, seed=1)
    lyria(nodes, seed=1)  # reused
    with httpx.Client(verify=False, headers={"Authorization": f"Key {CANARY_KEY}"}) as client:  # made elsewhere
        other = client.post("https://queue.fal.run/fal-ai/lyria2", json={"prompt": "x"}).json()["request_id"]
    run_node(nodes["FalAudioResultByRequestID"], endpoint_id="fal-ai/lyria2", request_id=other, unique_id="4")
    report, today_usd = spend_node(nodes)
    spend = asyncio.run(panel.spend())
    assert spend["today"]["usd"] == today_usd == pytest.approx(0.1)
    assert f"Today ({spend['today']['day']}): {spend['today']['text']} in 1 paid request" in report
    results = panel.recent()["results"]
    assert [(r["request_id"], r["reused"], r["kept"]) for r in results] == [
        (other, True, True), (fal.submissions[0].request_id, True, True), (fal.submissions[0].request_id, False, True)]
