"""Issue 18 case 12: the price-badge route (utils/routes.py) answers a badge per node: a malformed node gets its
own error entry and never fails the whole graph; a huge body is refused unread; and a flood of endpoint ids the
pack does not know can neither grow the price cache without bound nor make the pack call fal's pricing API more
than a few times a minute."""

import asyncio
import json
import math


from support import CANARY_KEY, pack_module

routes = pack_module("editor.routes")
pricing = pack_module("money.pricing")
base_module = pack_module("nodes.base")


def post(classes, body) -> tuple:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()  # NaN and Infinity written as JS does
    status, answer = asyncio.run(routes.answer(classes, raw))
    text = json.dumps(answer, allow_nan=False)  # what the browser must be able to read
    for secret in (CANARY_KEY, *CANARY_KEY.split(":")):
        assert secret not in text
    assert "Traceback" not in text and "File \"" not in text
    return status, answer


class Unbuildable(base_module.FalAudioNode):
    """A paid node whose badge cannot be computed (its constructor fails)."""

    ENDPOINT = "fal-ai/lyria2"
    DISPLAY_NAME = "Unbuildable (test)"

    def __init__(self):
        raise RuntimeError(f"broken with {CANARY_KEY}")


class Endless(base_module.FalAudioNode):
    """A paid node whose cost facts come out infinite."""

    ENDPOINT = "fal-ai/ace-step"
    DISPLAY_NAME = "Endless (test)"

    @classmethod
    def INPUT_TYPES(cls):
        return pack_module("nodes.widgets").node_inputs({"seconds": ("FLOAT", {"default": 1e308})})

    def billing(self, request, clips):
        return {"seconds": math.inf}


def test_each_malformed_node_gets_its_own_error_and_the_others_their_badges(fal, nodes, comfy):
    classes = {**nodes, "Unbuildable": Unbuildable, "Endless": Endless}
    deep = "x"
    for _ in range(200):
        deep = [deep]
    items = [
        {"id": "good", "type": "FalAudioLyria2", "widgets": {"prompt": "rain"}},
        {"id": "list type", "type": ["FalAudioLyria2"], "widgets": {}},
        {"id": "infinite takes", "type": "FalAudioLyria2", "widgets": {"takes": math.inf}},
        {"id": "nan duration", "type": "FalAudioAceStep", "widgets": {"duration": math.nan}},
        {"id": "deep", "type": "FalAudioAceStep", "widgets": {"tags": deep}},
        {"id": "unbuildable", "type": "Unbuildable", "widgets": {}},
        {"id": "endless", "type": "Endless", "widgets": {}},
        {"id": 7, "type": "FalAudioAceStep", "widgets": {"duration": 120.0}},
        {"id": ["not", "an", "id"], "type": "FalAudioLyria2"},  # cannot be named in the answer: left out
        {"id": "x" * 101, "type": "FalAudioLyria2"},
    ]
    status, answer = post(classes, {"nodes": items})
    assert status == 200
    estimates = answer["estimates"]
    assert estimates["good"]["text"] == "≈$0.10" and estimates["7"]["text"] == "≈$0.024"
    assert {node_id: entry for node_id, entry in estimates.items() if node_id not in ("good", "7")} == {
        "list type": {"error": "its type is not a node type name"},
        "infinite takes": {"error": "its widget 'takes' is inf, not a finite number"},
        "nan duration": {"error": "its widget 'duration' is nan, not a finite number"},
        "deep": {"error": "its widget 'tags' is not a string, number or boolean"},
        "unbuildable": {"error": "its price could not be computed"},
        "endless": {"error": "its price is not a finite number"},
    }


def test_a_body_the_parser_cannot_read_is_a_400_not_a_500(nodes):
    too_deep = b'{"nodes": [{"id": 1, "type": "FalAudioLyria2", "widgets": {"a": ' + b"[" * 100_000 + b"]" * 100_000
    assert post(nodes, too_deep + b"}}]}") == (400, {"error": 'expected JSON: {"nodes": [{"id", "type", "widgets"}]}'})


class Body:
    """A request's body as aiohttp hands it over, endless; counts what the handler read of it."""

    def __init__(self, content_length=None):
        self.content_length, self.content, self.read_bytes = content_length, self, 0

    async def read(self, count: int = -1) -> bytes:
        chunk = min(count if count >= 0 else 1 << 30, 65536)
        self.read_bytes += chunk
        return b"{" * chunk


def test_a_body_over_a_megabyte_is_refused_without_reading_it_whole(nodes):
    handler = routes.make_handler(nodes)
    for request, read_at_most in ((Body(content_length=10 ** 10), 0), (Body(), routes.MAX_BODY + 1)):
        response = asyncio.run(handler(request))
        assert response.status == 413 and json.loads(response.body) == {"error": "request too large"}
        assert request.read_bytes <= read_at_most


def test_a_flood_of_unknown_endpoint_ids_makes_a_few_pricing_calls(fal, nodes, comfy):
    """1,000 any-endpoint nodes naming 1,000 endpoints nobody knows, over ten badge requests in a minute."""
    for batch in range(10):
        items = [{"id": str(i), "type": "FalAudioAnyEndpoint", "widgets": {"endpoint": f"someone/app-{batch}-{i}"}}
                 for i in range(100)]
        status, answer = post(nodes, {"nodes": items})
        assert status == 200 and len(answer["estimates"]) == 100
        assert {e["text"] for e in answer["estimates"].values()} == {"price unknown"}
    assert 1 <= len(fal.pricing_calls) <= 2, [len(ids) for ids in fal.pricing_calls]
    assert sum(len(ids) for ids in fal.pricing_calls) == pricing.NEW_IDS_PER_MINUTE
    # The pack's own endpoints are still asked for (and priced by fal) within that minute.
    status, answer = post(nodes, {"nodes": [{"id": "1", "type": "FalAudioLyria2", "widgets": {}}]})
    assert answer["estimates"]["1"]["source"] == "fal API" and fal.pricing_calls[-1] == ["fal-ai/lyria2"]


def test_the_new_id_budget_comes_back_after_a_minute(fal, comfy, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(pricing.time, "monotonic", lambda: clock[0])
    fal.set_prices({f"owner/app-{i}": (0.001, "second") for i in range(150)})
    first = asyncio.run(pricing.lookup([f"owner/app-{i}" for i in range(150)], CANARY_KEY))
    later = sorted(e for e, p in first.items() if p.source != "fal API")
    assert len(later) == 50 and all(first[e].unit_price is None for e in later)
    assert asyncio.run(pricing.lookup(later[:1], CANARY_KEY))[later[0]].unit_price is None  # still this minute
    clock[0] += 61.0
    assert asyncio.run(pricing.lookup(later, CANARY_KEY))[later[0]].source == "fal API"


def test_endpoints_that_are_not_fal_endpoint_ids_are_never_asked_for_nor_cached(fal, nodes, comfy):
    odd = ["https://evil.example/x", "owner/app?x=1", "owner/../app", "owner", "o/" + "a" * 300, "a/b c"]
    items = [{"id": str(i), "type": "FalAudioAnyEndpoint", "widgets": {"endpoint": e}} for i, e in enumerate(odd)]
    assert post(nodes, {"nodes": items}) == (200, {"estimates": {}})
    assert fal.pricing_calls == [] and not (comfy.user_dir / "fal-audio" / pricing.CACHE_NAME).exists()


def test_the_price_cache_is_bounded_and_keeps_the_packs_endpoints(fal, comfy, monkeypatch):
    monkeypatch.setattr(pricing, "NEW_IDS_PER_MINUTE", 10_000)
    asyncio.run(pricing.lookup(["fal-ai/lyria2", "fal-ai/ace-step"], CANARY_KEY))
    for start in range(0, 700, 100):
        asyncio.run(pricing.lookup([f"someone/app-{i}" for i in range(start, start + 100)], CANARY_KEY))
    cache = json.loads((comfy.user_dir / "fal-audio" / pricing.CACHE_NAME).read_text())
    assert len(cache) == pricing.MAX_CACHED == 512
    assert {"fal-ai/lyria2", "fal-ai/ace-step", "someone/app-699"} <= set(cache)  # the oldest unknown ones went
    assert "someone/app-0" not in cache
    calls = len(fal.pricing_calls)
    asyncio.run(pricing.lookup(["fal-ai/lyria2"], CANARY_KEY))
    assert len(fal.pricing_calls) == calls  # still cached
