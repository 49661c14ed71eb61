"""Issue 10 in the real editor: the price badge on every paid node of the pack (drawn by web/js/fal_audio_price.js
from the pack's route), following edited widgets (a duration, takes, the length of a text), and a route that
never hands the fal key to the browser. Real ComfyUI v0.21.0, headless Chromium, both frontends."""

import json
import time

import pytest

from support import CANARY_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(params=["pinned", "newest"])
def editor_of(request):
    editor = request.getfixturevalue("editor" if request.param == "pinned" else "editor_newest")
    editor.clear()
    return editor


def pack_types(server):
    return sorted(name for name in server.get("/object_info") if name.startswith("FalAudio"))


def route_texts(ui, ids, changes=None):
    """What the route says for these nodes' current widget values (as the badge asks it), by node id."""
    nodes = ui.js("""([ids, changes]) => ids.map(id => { const n = app.graph.getNodeById(id); const w = {};
        for (const x of n.widgets || []) if (['string','number','boolean'].includes(typeof x.value)) w[x.name] = x.value;
        return {id: String(id), type: n.type, widgets: {...w, ...((changes || {})[id] || {})}}; })""", [ids, changes])
    answer = ui.server.post("/fal_audio/estimate", {"nodes": nodes})["estimates"]
    return {str(k): v["text"] for k, v in answer.items()}


def drawn(ui, ids):
    ui.js("() => app.canvas.draw(true, true)")
    return ui.js("(ids) => Object.fromEntries(ids.map(id => [String(id), app.graph.getNodeById(id).falPriceDrawn ?? null]))",
                 ids)


def wait_until_drawn(ui, ids, expected, timeout=20.0):
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        seen = drawn(ui, ids)
        if seen == expected:
            break
        time.sleep(0.3)
    return seen


def set_widget(ui, node_id, name, value):
    ui.js("([id, name, value]) => { app.graph.getNodeById(id).widgets.find(w => w.name === name).value = value; }",
          [node_id, name, value])


def test_every_paid_node_shows_its_price_and_follows_edits(editor_of):
    ui = editor_of
    since = ui.mark()
    types = pack_types(ui.server)
    ui.create_nodes(types, columns=6)
    ui.fit_view()
    ids = ui.js("(types) => types.map(t => app.graph.nodes.find(n => n.type === t).id)", types)
    by_type = dict(zip(types, ids))
    # The route prices the paid nodes from their widgets as the editor holds them; the rest get no answer.
    expected = route_texts(ui, ids)
    paid_ids = [i for i in ids if str(i) in expected]
    free_ids = [i for i in ids if str(i) not in expected]
    paid = {t for t, i in by_type.items() if i in paid_ids}
    assert {"FalAudioLyria2", "FalAudioAceStep", "FalAudioElevenLabsTTSv3", "FalAudioAnyEndpoint"} <= paid, paid
    assert {"FalAudioClient", "FalAudioSpend"} <= set(types) - paid
    assert wait_until_drawn(ui, paid_ids, expected) == expected
    assert set(drawn(ui, free_ids).values()) == {None}, "a free node got a price badge"

    # Edits: a longer song, more takes, a longer text: each badge follows its node's widgets.
    ace, lyria, tts = by_type["FalAudioAceStep"], by_type["FalAudioLyria2"], by_type["FalAudioElevenLabsTTSv3"]
    set_widget(ui, ace, "duration", 240.0)
    set_widget(ui, lyria, "takes", 4)
    set_widget(ui, tts, "text", "Hello there. " * 200)
    edited = route_texts(ui, paid_ids)
    for node_id in (ace, lyria, tts):
        assert edited[str(node_id)] != expected[str(node_id)], (node_id, edited, expected)
    assert edited[str(lyria)] == "≈$0.40 (4 takes)"
    assert wait_until_drawn(ui, paid_ids, edited) == edited
    assert ui.pack_problems(since) == []


def test_the_route_never_hands_the_key_to_the_browser(editor_of):
    ui = editor_of
    ui.create_nodes(["FalAudioLyria2", "FalAudioAceStep"], columns=2)
    body = {"nodes": [{"id": "1", "type": "FalAudioLyria2", "widgets": {"prompt": "x"}},
                      {"id": "2", "type": "FalAudioAceStep", "widgets": {"duration": 30}}]}
    # From the page, as the extension asks it: the raw answer text.
    text = ui.js("""async (body) => { const r = await fetch('/api/fal_audio/estimate', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)}); return r.status + ' ' + await r.text(); }""",
                 body)
    status, _, raw = text.partition(" ")
    assert status == "200" and json.loads(raw)["estimates"]["1"]["text"].startswith("≈$")
    for secret in (CANARY_KEY, *CANARY_KEY.split(":")):
        assert secret not in raw
    # The server did use the key: for fal's pricing API (now or within the cache's day), on the server side.
    assert json.loads(raw)["estimates"]["1"]["source"] in ("fal API", "fal API (cached)"), raw
    # Nor anywhere in what the page holds after the badges were drawn.
    time.sleep(1.0)
    page = ui.js("() => document.documentElement.outerHTML + JSON.stringify(app.graph.serialize())")
    for secret in (CANARY_KEY, *CANARY_KEY.split(":")):
        assert secret not in page


# ------------------------------------------------------------------ a real ComfyUI run: estimate, status, ledger, limit

def spend_now(server, events, client=None):
    prompt = {"9": {"class_type": "FalAudioSpend", "inputs": {}}}
    if client is not None:
        prompt["8"] = client
        prompt["9"]["inputs"]["fal_client"] = ["8", 0]
    entry = server.history(server.queue(prompt, events.client_id))
    assert entry["status"]["status_str"] == "success", entry["status"]
    (report,) = entry["outputs"]["9"]["text"]
    today = report.splitlines()[1]
    return report, float(today.split(": $", 1)[1].split(" ", 1)[0].replace(",", ""))


def test_a_run_shows_its_estimate_and_cost_and_the_limit_holds(server, fal):
    from comfyui_harness import Events

    events = Events(server)
    try:
        _, before = spend_now(server, events)
        client = {"class_type": "FalAudioClient", "inputs": {
            "profile": "", "queue_timeout": 300.0, "overall_timeout": 3600.0, "output_dir": "",
            "daily_spend_limit_usd": round(before + 0.15, 2), "max_requests_per_run": 16,
            "max_concurrent_requests": 16}}
        spec = server.get("/object_info/FalAudioClient")["FalAudioClient"]["input"]["required"]
        client["inputs"] = {k: v for k, v in client["inputs"].items() if k in spec}

        def lyria(seed):
            return {"8": client, "1": {"class_type": "FalAudioLyria2", "inputs": {
                "prompt": "cost test", "negative_prompt": "", "seed": seed, "takes": 1, "fal_client": ["8", 0]}},
                "2": {"class_type": "PreviewAudio", "inputs": {"audio": ["1", 0]}}}

        seed = int(time.time()) % 100000 + 20000  # a fresh take: nothing kept to reuse
        submitted = len(fal.submissions)
        entry = server.history(server.queue(lyria(seed), events.client_id))
        assert entry["status"]["status_str"] == "success", entry["status"]
        time.sleep(0.5)
        texts = events.texts_of("1")
        estimate = next(t for t in texts if t.startswith("Estimate "))
        assert estimate.startswith("Estimate ≈$0.10 · 1 request × $0.10/request (fal API"), texts
        assert texts.index(estimate) < texts.index("Submitting")
        request = fal.submissions[submitted].request_id
        assert texts[-1].startswith("Done in ") and texts[-1].endswith(f"· ≈$0.10 · request {request[:8]}"), texts

        report, after = spend_now(server, events, client)
        assert after == pytest.approx(before + 0.10, abs=0.005), report
        assert "fal-ai/lyria2: $" in report and "Daily limit: $" in report

        # The same prompt again: the kept result, free, and said so.
        entry = server.history(server.queue(lyria(seed), events.client_id))
        assert entry["status"]["status_str"] == "success"
        time.sleep(0.5)
        assert events.texts_of("1")[-1].endswith(f"$0 · kept result of request {request[:8]}")

        # A new take would pass the limit: refused before anything is sent, with the numbers.
        entry = server.history(server.queue(lyria(seed + 1), events.client_id))
        assert entry["status"]["status_str"] == "error"
        message = json.dumps(entry["status"]["messages"])
        assert "daily spend limit of $" in message and "estimated at $0.10" in message, message
        assert len(fal.submissions) == submitted + 1
        # The Spend node runs again every time (its answer is never cached).
        assert spend_now(server, events, client)[1] == pytest.approx(after)
    finally:
        events.close()
