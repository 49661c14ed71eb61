"""A smoke test against the real fal.ai: `FAL_KEY=... .venv/bin/python -m pytest -m live` (docs/live-tests.md).

It spends at most a few cents: Kokoro, fal's cheapest speech model, on a few words, three times (once through the
pack, once by hand through fal's queue, once cancelled), under a $0.10 daily limit the pack itself enforces. Each
test asserts what a user relies on and records what fal answered, scrubbed of the key, into
tests/fixtures/live/<name>.json; tests/emulator/test_live_replay.py then checks the emulator answers the same way.
"""

import asyncio
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from support import curated, defaults, pack_module, run_node

pytestmark = pytest.mark.live

# Where the recordings go (the replay's own test points it at a temp folder for a dry run against the emulator).
FIXTURES = Path(os.environ.get("FAL_AUDIO_LIVE_RECORDINGS")
                or Path(__file__).resolve().parent.parent / "fixtures" / "live")
KOKORO = "fal-ai/kokoro/american-english"
QUEUE = "https://queue.fal.run"
PRICING = "https://api.fal.ai/v1/models/pricing"
BUDGET_USD = 0.10
UNKNOWN = "fal-ai/fal-audio-no-such-model/v1"


def record(name: str, question: str, exchanges: list) -> None:
    """Write what fal answered to tests/fixtures/live/<name>.json, every string scrubbed of the key."""
    redact = pack_module("core.secrets").redact
    recording = {
        "question": question,
        "recorded": True,
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": ["fal.ai, answering tests/live/test_live_fal.py"],
        "exchanges": exchanges,
    }
    text = redact(json.dumps(recording, indent=1, ensure_ascii=False))
    (FIXTURES / f"{name}.json").write_text(text + "\n", encoding="utf-8")


def answer(response: httpx.Response, **extra) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    return {"status": response.status_code, "json": body, **extra}


def asked(name: str, response: httpx.Response, same_values=(), **extra) -> dict:
    request = response.request
    item = {"name": name, "request": {"method": request.method, "url": str(request.url.copy_with(query=None))},
            "response": answer(response, **extra)}
    if request.url.params:
        item["request"]["params"] = dict(request.url.params)
    if request.content and request.method in ("POST", "PUT"):
        item["request"]["json"] = json.loads(request.content)
    if same_values:
        item["same_values"] = list(same_values)
    return item


@pytest.fixture(scope="module")
def fal_http(live_key):
    with httpx.Client(headers={"Authorization": f"Key {live_key}"}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def kokoro_price(fal_http):
    """fal's price of Kokoro; the paid tests are skipped when it would take a run past the budget."""
    row = next((row for row in fal_http.get(PRICING, params={"endpoint_id": KOKORO}).json().get("prices", [])
                if row.get("endpoint_id") == KOKORO), None)
    units = pack_module("money.pricing").parse_unit(row and row.get("unit"))
    if row is not None and units is not None and units[0] == "character":
        # Three requests of at most 40 characters each.
        cost = 3 * 40 / units[1] * float(row["unit_price"])
        if cost > BUDGET_USD:
            pytest.skip(f"fal now charges {row['unit_price']} per {row['unit']}: the run would pass ${BUDGET_USD}")
    return row


def test_kokoro_end_to_end_through_the_pack(live_key, kokoro_price, nodes, comfy, monkeypatch):
    """The pack as a user runs it: estimate, submit, status, result, decode, the spend booked, then reuse."""
    monkeypatch.setenv("FAL_KEY", live_key)
    monkeypatch.setenv("FAL_AUDIO_DAILY_LIMIT_USD", str(BUDGET_USD))
    node = nodes["FalAudioKokoroAmericanEnglish"]
    inputs = defaults(node, prompt="Hello from fal Audio.", voice="af_heart")
    (audio, *_) = run_node(node, unique_id="1", **inputs)

    texts = comfy.texts()
    estimate = next(text for text in texts if text.startswith("Estimate"))
    assert "(fal API" in estimate, estimate
    assert texts.index(estimate) < next(i for i, text in enumerate(texts) if text.startswith("Done")), texts
    assert audio["waveform"].shape[0] == 1 and audio["waveform"].shape[-1] > audio["sample_rate"] * 0.3
    kept = list((comfy.output_dir / "fal-audio").glob("fal-ai_kokoro_american-english_*"))
    assert len(kept) == 1 and kept[0].stat().st_size > 1000

    report, today = run_node(nodes["FalAudioSpend"], unique_id="2")["result"]
    assert KOKORO in report and 0 < today <= BUDGET_USD, report

    comfy.progress_texts.clear()
    (again, *_) = run_node(node, unique_id="1", **inputs)
    assert again["waveform"].shape == audio["waveform"].shape
    assert any("kept result of request" in text for text in comfy.texts()), comfy.texts()


@pytest.fixture(scope="module")
def queue_flow(fal_http, kokoro_price):
    """One Kokoro request by hand through fal's queue; what fal answered at each step."""
    submitted = fal_http.post(f"{QUEUE}/{KOKORO}", json={"prompt": "Hello from the queue.", "voice": "af_heart"})
    assert submitted.status_code < 300, submitted.text
    urls = submitted.json()
    waiting = fal_http.get(urls["status_url"], params={"logs": "1"})
    with fal_http.stream("GET", urls["status_url"] + "/stream", params={"logs": "1"}) as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    done = fal_http.get(urls["status_url"], params={"logs": "1"})
    result = fal_http.get(urls["response_url"])
    file = httpx.get(result.json()["audio"]["url"], timeout=60)
    decoded = pack_module("media.audio").decode(file.content)
    return {"submit": submitted, "waiting": waiting, "stream": stream, "events": events, "done": done,
            "result": result, "file": file, "decoded": decoded}


def test_the_queue_answers_submit_status_stream_and_result(queue_flow):
    flow = queue_flow
    assert flow["events"] and flow["events"][-1]["status"] == "COMPLETED"
    assert {event["status"] for event in flow["events"]} <= {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert flow["done"].json()["status"] == "COMPLETED" and flow["result"].status_code == 200
    assert flow["decoded"]["waveform"].shape[-1] > 0
    stream = flow["stream"]
    record("queue_flow", "One short Kokoro request through fal's queue: the submit, its status while it waits, the "
           "status event stream up to COMPLETED, the status and the result once it is done.", [
               asked("submit", flow["submit"], same_values=["status"]),
               asked("status while waiting", flow["waiting"], same_values=["status"]),
               {"name": "status stream",
                "request": {"method": "GET", "url": str(stream.request.url.copy_with(query=None)),
                            "params": {"logs": "1"}},
                "response": {"status": stream.status_code,
                             "content_type": stream.headers.get("content-type", "").split(";")[0],
                             "events": flow["events"]}},
               asked("status when done", flow["done"], same_values=["status"]),
               asked("result", flow["result"], decoded={
                   "content_type": flow["file"].headers.get("content-type"),
                   "sample_rate": flow["decoded"]["sample_rate"],
                   "channels": int(flow["decoded"]["waveform"].shape[1])}),
           ])


def test_a_result_url_is_probed_as_chaining_probes_it(queue_flow):
    url = queue_flow["result"].json()["audio"]["url"]
    probe = httpx.get(url, headers={"Range": "bytes=0-0"}, timeout=30)
    gateway = pack_module("transport.gateway").Gateway("")
    reuse = pack_module("media.reuse")
    origin = reuse.Origin({"url": url, "path": "output.wav", "file_hash": ""}, {})
    assert asyncio.run(reuse.still_served(origin, gateway.probe)) == url
    record("result_probe", "A result file's URL probed as chaining does (media/reuse.py still_served -> "
           "Gateway.probe): GET with 'Range: bytes=0-0', without the fal key.", [{
               "name": "probe",
               "request": {"method": "GET", "url": url, "headers": {"Range": "bytes=0-0"}},
               "response": {"status": probe.status_code,
                            "headers": {"content-range": probe.headers.get("content-range")},
                            "body_length": len(probe.content)}}])


def test_a_queued_request_cancelled_and_what_fal_then_reports(fal_http, kokoro_price):
    submitted = fal_http.post(f"{QUEUE}/{KOKORO}", json={"prompt": "Cancelled before it ran.", "voice": "af_heart"})
    urls = submitted.json()
    cancelled = fal_http.put(urls["cancel_url"])
    assert cancelled.json().get("status") in ("CANCELLATION_REQUESTED", "ALREADY_COMPLETED"), cancelled.text
    deadline = time.monotonic() + 60
    while (status := fal_http.get(urls["status_url"], params={"logs": "1"})).json().get("status") != "COMPLETED":
        assert time.monotonic() < deadline, status.text
        time.sleep(1)
    result = fal_http.get(urls["response_url"])
    record("cancel", "A queued Kokoro request cancelled at once: what the cancel answers, and then what the status "
           "and the result say.", [asked("submit", submitted), asked("cancel", cancelled, same_values=["status"]),
                                   asked("status after cancel", status), asked("result after cancel", result)])


def test_an_endpoint_fal_does_not_serve(fal_http, live_key):
    response = fal_http.post(f"{QUEUE}/{UNKNOWN}", json={"prompt": "x"})
    assert response.status_code == 404, response.text
    gateway = pack_module("transport.gateway")
    with pytest.raises(gateway.HTTPError) as caught:
        asyncio.run(gateway.Gateway(live_key).submit(UNKNOWN, {"prompt": "x"}))
    assert caught.value.status_code == 404
    record("unknown_endpoint", "A submit to an endpoint id fal does not serve.", [asked("submit", response)])


def test_the_price_list_for_the_packs_endpoints(fal_http, nodes, comfy, live_key):
    # The curated nodes' endpoints (fal takes 1-50 ids a call; the nodes generated from the catalog add ~126).
    endpoints = sorted({nodes[name].ENDPOINT for name in curated(nodes)})
    response = fal_http.get(PRICING, params={"endpoint_id": ",".join(endpoints)})
    assert response.status_code == 200, response.text
    rows = response.json()["prices"]
    assert rows and all(set(row) >= {"endpoint_id", "unit_price", "unit", "currency"} for row in rows)
    pricing = pack_module("money.pricing")
    prices = asyncio.run(pricing.lookup(endpoints, live_key))
    for row in rows:
        if row["endpoint_id"] in endpoints and pricing.parse_unit(row["unit"]) is not None:
            assert prices[row["endpoint_id"]].source.startswith("fal API"), row
    record("pricing", "fal's price list for the endpoints of the pack's nodes: GET "
           "https://api.fal.ai/v1/models/pricing?endpoint_id=<all of them>.", [asked("pricing", response)])
