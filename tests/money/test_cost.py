"""Issue 10: money you can see and cap. Prices from fal's pricing API (emulated) or the pack's
table, the estimate every node shows before paying, the ledger after runs, reuse, failure and
cancel at $0, the daily limit (also under two nodes at once and across a restart), the Spend node."""

import asyncio
import json
import math
import time

import pytest
import torch

from books import books
from emulator_models import serve_every_endpoint
from fal_emulator import DEFAULT_PRICES, EmulatedError
from support import CANARY_KEY, curated, defaults, pack_module, run_node

pricing = pack_module("money.pricing")
ledger = pack_module("money.ledger")
job_module = pack_module("jobs.job")
journal = pack_module("money.journal")
options_module = pack_module("jobs.options")

DR_LYRICS = "[00:10.00]Moonlight spills through broken blinds"
YUE_LYRICS = "[verse]\nStaring at the sunset\n\n[chorus]\nEvery road you take"
MINIMAX_LYRICS = "## Fast and Limitless\nIn the heart of the code\n##"


def tone(seconds, rate=8000, channels=1):
    t = torch.arange(int(round(seconds * rate)), dtype=torch.float64) / rate
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * 220.0 * (c + 1) * t) for c in range(channels)])
    return {"waveform": wave.float().unsqueeze(0).contiguous(), "sample_rate": rate}


def frames(count, size=16):
    return torch.rand(count, size, size, 3)


def restart():
    """What a ComfyUI restart forgets: every open journal/ledger handle of this process."""
    journal.forget_open()


def spend_report(limit=0.0):
    """The fal Spend node's text and today's spend, from the journal's books."""
    return journal.current().spend_report(limit)


def estimates(comfy):
    return [text for text in comfy.texts() if text.startswith("Estimate")]


def rows(comfy_fake):
    return books("SELECT endpoint, state, units, unit, unit_price, price_source, estimate_usd, cost_usd,"
                 " request_id FROM ledger ORDER BY id")


# ------------------------------------------------------------------ the estimate of every node

# The endpoints of fal's generated types (fal-js, 2026-08) new nodes are being written for.
CATALOG = ("fal-ai/elevenlabs/sound-effects/v2", "fal-ai/minimax-music/v2.6", "fal-ai/stable-audio-25/text-to-audio",
           "fal-ai/stable-audio-25/audio-to-audio", "fal-ai/stable-audio-25/inpaint", "fal-ai/elevenlabs/music",
           "fal-ai/lyria3", "fal-ai/demucs", "fal-ai/elevenlabs/audio-isolation", "fal-ai/elevenlabs/tts/eleven-v3",
           "fal-ai/minimax/speech-2.8-hd", "fal-ai/kokoro/american-english", "fal-ai/wizper",
           "fal-ai/elevenlabs/speech-to-text/scribe-v2", "fal-ai/kling-video/video-to-audio")

UNKNOWN = "price unknown; unknown (not in fal's pricing API answer nor the pack's table)"
# node -> (inputs beyond the defaults, expected estimate of the run in USD, expected amount text)
EVERY_NODE = {
    "FalAudioLyria2": (dict(prompt="ambient"), 0.10, "1 request × $0.10/request"),
    "FalAudioAceStep": (dict(tags="lofi", duration=60.0), 0.012, "60 s × $0.0002/second"),
    "FalAudioAceStepPromptToAudio": (dict(prompt="a song", duration=30.0, takes=3), 3 * 0.006,
                                     "3 × 30 s × $0.0002/second"),
    "FalAudioAceStepInpaint": (dict(tags="lofi", end_time=5.0, audio=tone(12.0)), 12 * 0.0002,
                               "12 s × $0.0002/second"),
    "FalAudioAceStepOutpaint": (dict(tags="lofi", extend_after_duration=30.0, audio=tone(10.0)), 40 * 0.0002,
                                "40 s × $0.0002/second"),
    "FalAudioAceStepAudioToAudio": (dict(tags="jazz", original_tags="lofi", audio=tone(20.0), takes=2),
                                    2 * 20 * 0.0002, "2 × 20 s × $0.0002/second"),
    "FalAudioCassetteMusic": (dict(prompt="chill", duration=90), 0.03, "90 s × $0.02/minute"),
    "FalAudioCassetteSoundEffects": (dict(prompt="dog", duration=10), 0.01, "10 s × $0.001/second"),
    "FalAudioDiffRhythm": (dict(lyrics=DR_LYRICS, style_prompt="pop", music_duration="95s"), 0.095,
                           "95 s × $0.01/10 seconds"),
    "FalAudioElevenLabsSoundEffects": (dict(text="braam", duration_seconds=5.0), 0.01, "5 s × $0.002/second"),
    "FalAudioYuE": (dict(lyrics=YUE_LYRICS, genres="pop"), 0.05, "1 request × $0.05/request"),
    "FalAudioMMAudioTextToAudio": (dict(prompt="rain", duration=12.5), 0.0125, "12.5 s × $0.001/second"),
    "FalAudioMiniMaxMusic": (dict(prompt=MINIMAX_LYRICS, reference_audio=tone(16.0)), 0.035,
                             "1 request × $0.035/request"),
    "FalAudioMMAudioVideoToAudio": (dict(images=frames(48), frame_rate=24.0), 0.002, "2 s × $0.001/second"),
    "FalAudioElevenLabsTTSv3": (dict(text="x" * 1234), 0.1234, "1,234 characters × $0.10/1000 characters"),
    "FalAudioMiniMaxSpeech28HD": (dict(prompt="y" * 250, takes=2), 2 * 0.025,
                                  "2 × 250 characters × $0.10/1000 characters"),
    "FalAudioDemucs": (dict(audio=tone(10.0)), 0.007, "10 s × $0.0007/second"),
    # No published price (fal's API does not list them, the pack's table has none): said, not guessed.
    "FalAudioKokoroAmericanEnglish": (dict(prompt="hello"), 0.0001, "5 characters × $0.02/1000 characters"),
    "FalAudioWizper": (dict(audio=tone(3.0)), None, "price unknown; "),  # billed per compute second
    "FalAudioElevenLabsAudioIsolation": (dict(audio=tone(3.0)), 0.005, "3 s × $0.10/minute"),
    "FalAudioElevenLabsSoundEffectsV2": (dict(text="braam", duration_seconds=5.0), 0.01, "5 s × $0.002/second"),
    # ElevenLabs Music bills every started minute: 90 s is 2 minutes.
    "FalAudioElevenLabsMusic": (dict(prompt="synthwave", music_length_seconds=90.0), 1.20,
                                "90 s × $0.60/minute"),
    "FalAudioMiniMaxMusicV26": (dict(prompt="pop", lyrics="[Verse]\nla"), 0.15, "1 request × $0.15/audio"),
    "FalAudioStableAudio25TextToAudio": (dict(prompt="piano", seconds_total=30), 0.20, "1 request × $0.20/audio"),
    "FalAudioStableAudio25AudioToAudio": (dict(prompt="rock", audio=tone(10.0)), 0.20, "1 request × $0.20/audio"),
    "FalAudioStableAudio25Inpaint": (dict(prompt="lofi", mask_start=2.0, mask_end=6.0, seconds_total=12,
                                          audio=tone(10.0)), 0.20, "1 request × $0.20/audio"),
    "FalAudioLyria3": (dict(prompt="dance", takes=2), 0.08, "2 × 1 request × $0.04/audio"),
}


def test_every_paid_node_is_covered_here_and_in_the_price_table(nodes):
    # Nodes generated from the catalog, and the flagships (curated specs priced, like them, from data/catalog.json):
    # their prices are tested in tests/nodes/test_catalog_generated.py and test_flagships.py.
    paid = {n for n in curated(nodes) if not any(o.get("as") == "response" for o in nodes[n].SPEC["outputs"])}
    assert paid == set(EVERY_NODE)
    table = json.loads(pricing.TABLE_PATH.read_text())["prices"]
    for name in paid:
        row = table[nodes[name].ENDPOINT]
        assert {"unit_price", "unit", "source", "seen"} <= set(row), name
    # and every endpoint of fal's current audio catalog, which the pack is adding nodes for
    for endpoint in CATALOG:
        assert endpoint in table, endpoint
    for endpoint, row in table.items():
        assert row["unit_price"] is None or pricing.parse_unit(row["unit"]) is not None, endpoint


@pytest.mark.parametrize("name", sorted(EVERY_NODE))
def test_estimate_of_every_node_is_shown_before_the_submit(fal, nodes, comfy, name):
    extra, usd, amount = EVERY_NODE[name]
    cls = nodes[name]
    serve_every_endpoint(fal, cls)
    run_node(cls, unique_id="7", **defaults(cls, **extra))
    shown = estimates(comfy)
    # Endpoints the emulated pricing API does not list are priced from the pack's table or data/catalog.json.
    source = "fal API" if cls.ENDPOINT in DEFAULT_PRICES else "pack table (seen "
    if usd is None:
        assert len(shown) == 1 and shown[0].startswith(f"Estimate ≈$? ({amount}"), comfy.texts()
    else:
        assert shown[0].startswith(f"Estimate ≈{pricing.money(usd)} · {amount} ({source}"), comfy.texts()
    texts = comfy.texts()
    assert texts.index(shown[0]) < texts.index(next(t for t in texts if t.endswith("Submitting")))
    book = rows(comfy)
    takes = extra.get("takes", 1)
    assert len(book) == takes and all(r[5].startswith(source) or usd is None for r in book)
    if usd is not None:
        assert sum(r[6] for r in book) == pytest.approx(usd)


@pytest.mark.both_books
def test_takes_times_input_clips(fal, nodes, comfy):
    """A batch of 2 clips x 3 takes is 6 requests, each billed by its own clip's length."""
    cls = nodes["FalAudioAceStepAudioToAudio"]
    batch = {"waveform": torch.cat([tone(10.0)["waveform"], tone(10.0)["waveform"] * 0.5]), "sample_rate": 8000}
    run_node(cls, unique_id="7", **defaults(cls, tags="jazz", original_tags="lofi", audio=batch, takes=3))
    assert estimates(comfy) == ["Estimate ≈$0.012 · 6 × 10 s × $0.0002/second (fal API)"]
    assert len(fal.submissions) == 6 and len(rows(comfy)) == 6


@pytest.mark.both_books
def test_per_second_requests_settle_with_the_returned_duration(fal, nodes, comfy):
    fal.set_handler("fal-ai/ace-step", lambda payload: fal.file_result(seconds=30.0, rate=8000, channels=2))
    cls = nodes["FalAudioAceStep"]
    run_node(cls, unique_id="7", **defaults(cls, tags="lofi", duration=60.0))
    (row,) = rows(comfy)
    assert row[1] == "settled" and row[6] == pytest.approx(0.012) and row[7] == pytest.approx(0.006)
    assert row[2] == pytest.approx(30.0)  # units: the seconds fal returned
    final = comfy.texts()[-1]
    request = fal.submissions[0].request_id
    assert final.startswith("Done in ") and final.endswith(f" · 30.0 s 8 kHz stereo · ≈$0.006 · request {request[:8]}")


@pytest.mark.both_books
def test_a_fixed_price_node_settles_at_its_price(fal, nodes, comfy):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=3.0, rate=48000, channels=2))
    run_node(nodes["FalAudioLyria2"], unique_id="7", **defaults(nodes["FalAudioLyria2"], prompt="a"))
    (row,) = rows(comfy)
    assert row[7] == pytest.approx(0.10)
    assert comfy.texts()[-1].endswith(f"· 3.0 s 48 kHz stereo · ≈$0.10 · request {fal.submissions[0].request_id[:8]}")


# ------------------------------------------------------------------ where prices come from

def lookup(endpoints, key=CANARY_KEY):
    return asyncio.run(pricing.lookup(endpoints, key))


def test_prices_come_from_fal_and_are_cached_for_a_day(fal, comfy, monkeypatch):
    fal.set_pricing_mode("rising")
    first = lookup(["fal-ai/ace-step"])["fal-ai/ace-step"]
    assert first.source == "fal API" and first.unit_price == pytest.approx(0.0002 * 1.1)
    again = lookup(["fal-ai/ace-step"])["fal-ai/ace-step"]
    assert again.source == "fal API (cached)" and again.unit_price == first.unit_price
    assert len(fal.pricing_calls) == 1
    assert fal.pricing_calls[0] == ["fal-ai/ace-step"]
    cache = (comfy.user_dir / "fal-audio" / pricing.CACHE_NAME).read_text()
    assert CANARY_KEY not in cache and CANARY_KEY.split(":")[1] not in cache
    later = time.time() + pricing.CACHE_SECONDS + 1
    monkeypatch.setattr(pricing.time, "time", lambda: later)
    changed = lookup(["fal-ai/ace-step"])["fal-ai/ace-step"]
    assert changed.source == "fal API" and changed.unit_price == pytest.approx(0.0002 * 1.1 ** 2)


def test_one_call_per_fifty_ids_and_every_page_is_read(fal, comfy):
    many = {f"owner/app-{i}": (0.001 * (i + 1), "second") for i in range(70)}
    fal.set_prices(many)
    prices = lookup(list(many))
    assert [len(ids) for ids in fal.pricing_calls] == [50, 50, 50, 20]  # 3 pages of 20 rows, then 20 ids
    assert all(prices[e].unit_price == pytest.approx(p) and prices[e].source == "fal API" for e, (p, _) in many.items())


def test_wrong_key_falls_back_to_the_table_with_a_log_line(fal, comfy, captured_logs):
    prices = lookup(["fal-ai/ace-step", "fal-ai/lyria2"], key="wrong-key:0123456789abcdef")
    assert prices["fal-ai/ace-step"].source.startswith("pack table (seen ")
    assert prices["fal-ai/ace-step"].unit_price == 0.0002 and prices["fal-ai/lyria2"].unit_price == 0.1
    assert "HTTP 401" in captured_logs.text and "pack's price table" in captured_logs.text
    assert "0123456789abcdef" not in captured_logs.text


def test_an_endpoint_fal_does_not_list_uses_the_table(fal, comfy, captured_logs):
    fal.set_prices({"fal-ai/ace-step": (0.0003, "second")})
    prices = lookup(["fal-ai/ace-step", "fal-ai/diffrhythm"])
    assert prices["fal-ai/ace-step"].source == "fal API" and prices["fal-ai/ace-step"].unit_price == 0.0003
    assert prices["fal-ai/diffrhythm"].source.startswith("pack table") and prices["fal-ai/diffrhythm"].unit == "10 seconds"
    assert "does not list fal-ai/diffrhythm" in captured_logs.text
    lookup(["fal-ai/ace-step", "fal-ai/diffrhythm"])
    assert len(fal.pricing_calls) == 1  # "not listed" is remembered too


@pytest.mark.parametrize("mode", ["not_json", "no_prices", "bad_rows"])
def test_garbage_from_the_pricing_api_falls_back_to_the_table(fal, nodes, comfy, captured_logs, mode):
    fal.set_pricing_mode(mode)
    run_node(nodes["FalAudioLyria2"], unique_id="7", **defaults(nodes["FalAudioLyria2"], prompt="a"))
    (shown,) = estimates(comfy)
    assert "(pack table (seen " in shown and "≈$0.10" in shown
    assert "pack's price table" in captured_logs.text or "cannot use" in captured_logs.text
    assert len(fal.submissions) == 1


def test_a_slow_or_unreachable_pricing_api_delays_a_run_by_at_most_about_two_seconds(fal, nodes, comfy):
    fal.fault("GET", r"api\.fal\.ai/v1/models/pricing", delay=8.0)
    started = time.monotonic()
    prices = lookup(["fal-ai/ace-step"])
    assert time.monotonic() - started < pricing.LOOKUP_BUDGET + 1.5
    assert prices["fal-ai/ace-step"].source.startswith("pack table")
    # The next run does not wait again: the outage is remembered for a while.
    started = time.monotonic()
    run_node(nodes["FalAudioLyria2"], unique_id="7", **defaults(nodes["FalAudioLyria2"], prompt="a"))
    assert "pack table" in estimates(comfy)[0]
    assert time.monotonic() - started < 2.0


def test_dropped_connection_falls_back(fal, comfy):
    fal.fault("GET", r"api\.fal\.ai/v1/models/pricing", close=True)
    assert lookup(["fal-ai/lyria2"])["fal-ai/lyria2"].source.startswith("pack table")


@pytest.mark.both_books
def test_unknown_price_is_said_and_costs_are_not_invented(fal, nodes, comfy):
    fal.set_prices({})
    cls = nodes["FalAudioYuE"]  # in neither the pack's table nor fal's price list of the catalog
    run_node(cls, unique_id="7", **defaults(cls, lyrics=YUE_LYRICS, genres="pop"))
    (shown,) = estimates(comfy)
    assert shown.startswith("Estimate ≈$? (price unknown; unknown")
    assert "≈$?" in comfy.texts()[-1]
    assert rows(comfy)[0][6] is None


# ------------------------------------------------------------------ ledger: reuse, failure, cancel

def lyria(nodes, **inputs):
    return run_node(nodes["FalAudioLyria2"], unique_id="7", **defaults(nodes["FalAudioLyria2"], prompt="money",
                                                                        **inputs))


@pytest.mark.both_books
def test_reuse_costs_nothing_and_says_so(fal, nodes, comfy):
    lyria(nodes, seed=1)
    request = fal.submissions[0].request_id
    lyria(nodes, seed=1)
    assert len(fal.submissions) == 1
    assert comfy.texts()[-1].endswith(f"· $0 · kept result of request {request[:8]}")
    assert [(r[1], r[7]) for r in rows(comfy)] == [("settled", pytest.approx(0.10)), ("reused", 0)]
    text, today = spend_report()
    assert today == pytest.approx(0.10)
    assert "1 kept results reused" in text


@pytest.mark.both_books
def test_failed_request_costs_nothing(fal, nodes, comfy):
    def fail(payload):
        raise EmulatedError(500, {"detail": "GPU fell over"})

    fal.set_handler("fal-ai/lyria2", fail)
    with pytest.raises(Exception, match="GPU fell over"):
        lyria(nodes)
    (row,) = rows(comfy)
    assert row[1] == "unpaid" and row[7] == 0 and row[8] == fal.submissions[0].request_id
    assert comfy.texts()[-1].startswith("Failed after ") and "$0 paid (fal bills successful outputs only)" in \
        comfy.texts()[-1]
    assert spend_report()[1] == 0


@pytest.mark.both_books
def test_submit_refused_by_fal_costs_nothing(fal, nodes, comfy):
    fal.fault("POST", r"queue\.fal\.run/fal-ai/lyria2$", status=422, body={"detail": [{"loc": ["body", "prompt"],
                                                                                       "msg": "bad"}]})
    with pytest.raises(Exception):
        lyria(nodes)
    assert [r[1] for r in rows(comfy)] == ["unpaid"]
    assert spend_report()[1] == 0


@pytest.mark.both_books
def test_cancel_costs_nothing_and_says_what_was_paid(fal, nodes, comfy):
    fal.set_timing("fal-ai/lyria2", run_seconds=30.0)
    comfy.cancel_once_submitted(fal)
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes)
    assert fal.cancels == [fal.submissions[0].request_id]
    assert [(r[1], r[7]) for r in rows(comfy)] == [("unpaid", 0)]
    assert comfy.texts()[-1].startswith("Cancelled after ") and "$0 paid" in comfy.texts()[-1]


@pytest.mark.both_books
def test_ledger_and_spend_node_after_runs(fal, nodes, comfy):
    lyria(nodes, seed=1)
    lyria(nodes, seed=2)
    cls = nodes["FalAudioAceStep"]
    fal.set_handler("fal-ai/ace-step", lambda payload: fal.file_result(seconds=10.0, rate=8000, channels=1))
    run_node(cls, unique_id="8", **defaults(cls, tags="lofi", duration=10.0))
    spend = nodes["FalAudioSpend"]
    assert spend.INPUT_TYPES()["required"] == {}
    assert spend.IS_CHANGED() != spend.IS_CHANGED()  # NaN: re-run every time
    out = run_node(spend, unique_id="9")
    report, today = out["result"]
    assert today == pytest.approx(0.202)
    lines = report.splitlines()
    assert lines[1].startswith(f"Today ({time.strftime('%Y-%m-%d')}): $0.20 in 3 paid requests")
    assert any(line.startswith("Last 7 days") and "$0.20 in 3 paid requests" in line for line in lines)
    assert "  fal-ai/lyria2: $0.20 in 2 paid" in lines and "  fal-ai/ace-step: $0.002 in 1 paid" in lines
    assert out["ui"]["text"] == [report]


@pytest.mark.both_books
def test_spend_of_earlier_days_counts_in_the_week_only(fal, nodes, comfy, monkeypatch):
    import datetime

    lyria(nodes, seed=1)
    real = datetime.date.today()

    class Tomorrow(datetime.date):
        @classmethod
        def today(cls):
            return real + datetime.timedelta(days=1)

    monkeypatch.setattr(ledger.datetime, "date", Tomorrow)
    report, today = spend_report()
    assert today == 0
    assert "$0.10 in 1 paid request" in [line for line in report.splitlines() if line.startswith("Last 7")][0]


# ------------------------------------------------------------------ the daily limit

def client(nodes, limit, **overrides):
    cls = nodes["FalAudioClient"]
    (options,) = run_node(cls, **defaults(cls, daily_spend_limit_usd=limit, **overrides))
    return options


@pytest.mark.both_books
def test_limit_refuses_before_any_upload_or_submit_with_the_numbers(fal, nodes, comfy):
    options = client(nodes, 0.12)
    lyria(nodes, seed=1, fal_client=options)
    cls = nodes["FalAudioAceStepAudioToAudio"]
    with pytest.raises(ledger.SpendLimitReached) as refused:
        run_node(cls, unique_id="8", **defaults(cls, tags="a", original_tags="b", audio=tone(240.0, rate=8000),
                                               fal_client=options))
    message = str(refused.value)
    assert "estimated at $0.048" in message and "today's recorded spend of $0.10" in message
    assert "daily spend limit of $0.12" in message and "Nothing was sent to fal" in message
    assert len(fal.submissions) == 1 and fal.uploads == []


@pytest.mark.both_books
def test_limit_holds_across_a_restart(fal, nodes, comfy):
    options = client(nodes, 0.15)
    lyria(nodes, seed=1, fal_client=options)
    restart()
    with pytest.raises(ledger.SpendLimitReached, match=r"today's recorded spend of \$0.10"):
        lyria(nodes, seed=2, fal_client=options)
    assert len(fal.submissions) == 1
    lyria(nodes, seed=1, fal_client=options)  # a kept result is free, even at the limit
    assert len(fal.submissions) == 1


@pytest.mark.both_books
def test_two_nodes_at_once_cannot_both_slip_under_the_limit(fal, nodes, comfy):
    fal.set_timing("fal-ai/lyria2", run_seconds=0.5)
    options = client(nodes, 0.15)
    cls = nodes["FalAudioLyria2"]

    async def both():
        return await asyncio.gather(
            cls().generate(fal_client=options, unique_id="1", **defaults(cls, prompt="a", seed=1)),
            cls().generate(fal_client=options, unique_id="2", **defaults(cls, prompt="b", seed=2)),
            return_exceptions=True)

    outcomes = asyncio.run(both())
    refused = [o for o in outcomes if isinstance(o, ledger.SpendLimitReached)]
    assert len(refused) == 1 and len(fal.submissions) == 1, outcomes
    assert "daily spend limit of $0.15" in str(refused[0])


@pytest.mark.both_books
def test_released_reservation_frees_the_limit(fal, nodes, comfy):
    """A request fal failed costs nothing, so it does not count against the limit."""
    options = client(nodes, 0.15)
    fal.set_handler("fal-ai/lyria2", lambda payload: (_ for _ in ()).throw(EmulatedError(500, {"detail": "x"})))
    with pytest.raises(Exception):
        lyria(nodes, seed=1, fal_client=options)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0))
    lyria(nodes, seed=2, fal_client=options)
    assert len(fal.submissions) == 2


@pytest.mark.both_books
def test_unknown_price_with_a_limit_is_refused(fal, nodes, comfy):
    fal.set_prices({})
    options = client(nodes, 5.0)
    cls = nodes["FalAudioYuE"]
    with pytest.raises(ledger.SpendLimitReached, match="price of this run is unknown"):
        run_node(cls, unique_id="8", **defaults(cls, lyrics=YUE_LYRICS, genres="pop", fal_client=options))
    assert fal.submissions == [] and fal.uploads == []


def test_environment_limit_for_unconnected_nodes(fal, nodes, comfy, monkeypatch):
    monkeypatch.setenv("FAL_AUDIO_DAILY_LIMIT_USD", "0.05")
    with pytest.raises(ledger.SpendLimitReached, match=r"limit of \$0.05"):
        lyria(nodes)
    assert fal.submissions == []
    client_options = client(nodes, 0.0)  # a connected fal Client with 0: no limit
    lyria(nodes, fal_client=client_options)
    assert len(fal.submissions) == 1


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_bad_limit_is_refused_naming_the_field(fal, nodes, comfy, monkeypatch, value):
    with pytest.raises(ValueError, match="'daily_spend_limit_usd'"):
        client(nodes, value)
    monkeypatch.setenv("FAL_AUDIO_DAILY_LIMIT_USD", str(value))
    with pytest.raises(ValueError, match="FAL_AUDIO_DAILY_LIMIT_USD"):
        lyria(nodes)
    monkeypatch.setenv("FAL_AUDIO_DAILY_LIMIT_USD", "ten dollars")
    with pytest.raises(ValueError, match="FAL_AUDIO_DAILY_LIMIT_USD"):
        lyria(nodes)
    assert fal.submissions == []


# ------------------------------------------------------------------ the editor's price badges

routes = pack_module("editor.routes")


# A per-character model, declared as the TTS nodes are.
SpeechForTest = pack_module("nodes.spec").node_class("SpeechForTest", {
    "endpoint": "fal-ai/elevenlabs/tts/eleven-v3", "name": "TTS (test)", "description": "", "task": "speech",
    "inputs": [{"name": "text", "kind": "multiline", "required": True}], "outputs": [{"name": "audio", "type": "AUDIO"}],
    "price": {"characters": "text"}})


def badge_answer(nodes, items, classes=None):
    status, body = asyncio.run(routes.answer(classes or nodes, json.dumps({"nodes": items}).encode()))
    assert status == 200
    text = json.dumps(body)
    for secret in (CANARY_KEY, *CANARY_KEY.split(":")):
        assert secret not in text
    return body["estimates"]


def test_route_prices_every_paid_node_from_its_widgets(fal, nodes, comfy):
    items = [{"id": name, "type": name, "widgets": defaults(nodes[name])} for name in sorted(nodes)]
    estimates = badge_answer(nodes, items)
    paid = {name for name, cls in nodes.items() if getattr(cls, "ENDPOINT", "")} | {"FalAudioAnyEndpoint"}
    assert set(estimates) == paid  # fal Client, Spend, waveform... get no badge
    any_endpoint = estimates.pop("FalAudioAnyEndpoint")  # its endpoint is a widget (default: Stable Audio 2.5)
    assert any_endpoint["endpoint"] == "fal-ai/stable-audio-25/text-to-audio" and any_endpoint["text"] == "≈$0.20"
    odd = {"id": 9, "type": "FalAudioAnyEndpoint", "widgets": {"endpoint": "https://evil.example/x?y=1"}}
    assert badge_answer(nodes, [odd]) == {}  # not a fal endpoint id: no lookup, no badge
    assert estimates["FalAudioLyria2"]["text"] == "≈$0.10"
    assert estimates["FalAudioAceStep"]["text"] == "≈$0.012"  # 60 s default
    assert estimates["FalAudioAceStepInpaint"]["text"] == "$0.0002/second of input"  # the clip's length decides
    assert estimates["FalAudioMiniMaxMusic"]["text"] == "≈$0.035 per input clip"
    assert estimates["FalAudioMMAudioVideoToAudio"]["text"] == "$0.001/second"  # 0 = as long as the frames
    assert estimates["FalAudioElevenLabsSoundEffects"]["text"] == "≈$0.044"  # auto length: priced at 22 s
    for name, estimate in estimates.items():
        listed = nodes[name].ENDPOINT in DEFAULT_PRICES  # what the emulated pricing API lists
        if name not in curated(nodes) and not listed:  # generated: data/catalog.json's price, if any
            assert estimate["source"].startswith("pack table") or estimate["text"] == "price unknown", name
            continue
        # not listed: the pack's table or data/catalog.json (fal's price list when the catalog was built), if any
        assert estimate["source"] == "fal API" if listed else (
            estimate["source"].startswith("pack table") or estimate["text"] == "price unknown"), (name, estimate)
    assert fal.pricing_calls and all(len(ids) <= 50 for ids in fal.pricing_calls)


def test_route_follows_edited_widgets(fal, nodes, comfy):
    ace = defaults(nodes["FalAudioAceStep"], tags="lofi")
    first = badge_answer(nodes, [{"id": 3, "type": "FalAudioAceStep", "widgets": ace}])["3"]
    longer = badge_answer(nodes, [{"id": 3, "type": "FalAudioAceStep", "widgets": {**ace, "duration": 120.0}}])["3"]
    takes = badge_answer(nodes, [{"id": 3, "type": "FalAudioAceStep",
                                  "widgets": {**ace, "duration": 120.0, "takes": 3}}])["3"]
    assert (first["text"], longer["text"], takes["text"]) == ("≈$0.012", "≈$0.024", "≈$0.072 (3 takes)")
    assert takes["usd"] == pytest.approx(0.072) and takes["per_request_usd"] == pytest.approx(0.024)
    speech = {"SpeechForTest": SpeechForTest}
    short = badge_answer(nodes, [{"id": 1, "type": "SpeechForTest", "widgets": {"text": "x" * 500}}], speech)["1"]
    long = badge_answer(nodes, [{"id": 1, "type": "SpeechForTest", "widgets": {"text": "x" * 2500}}], speech)["1"]
    assert (short["text"], long["text"]) == ("≈$0.05", "≈$0.25")
    assert long["billed_by"]["characters"] == 2500


def test_route_refuses_garbage_and_survives_a_dead_pricing_api(fal, nodes, comfy):
    fal.fault("GET", r"api\.fal\.ai/v1/models/pricing", status=401, times=-1)
    (estimate,) = badge_answer(nodes, [{"id": 1, "type": "FalAudioLyria2", "widgets": {}}]).values()
    assert estimate["text"] == "≈$0.10" and estimate["source"].startswith("pack table")
    assert asyncio.run(routes.answer(nodes, b"not json"))[0] == 400
    assert asyncio.run(routes.answer(nodes, b'{"nodes": 3}'))[0] == 400
    odd = badge_answer(nodes, [{"id": 1, "type": "NoSuchNode"}, 7, {"type": "FalAudioLyria2", "widgets": "x"}])
    assert list(odd) == ["None"] and odd["None"]["text"] == "≈$0.10"


def test_route_is_registered_only_inside_comfyui(monkeypatch, nodes):
    import sys
    import types

    monkeypatch.delitem(sys.modules, "server", raising=False)
    assert routes.register(nodes) is False  # outside ComfyUI: nothing to do, nothing breaks

    registered = []

    class Routes:
        def post(self, path):
            return lambda handler: registered.append((path, handler)) or handler

        get = post

    server = types.ModuleType("server")
    server.PromptServer = type("PromptServer", (), {"instance": types.SimpleNamespace(routes=Routes())})
    monkeypatch.setitem(sys.modules, "server", server)
    assert routes.register(nodes) is True and routes.register(nodes) is True
    assert [path for path, _ in registered] == ["/fal_audio/estimate"] + [
        "/fal_audio/panel/" + name for name in ("spend", "inflight", "recent", "cancel", "play/{request_id}",
                                                "fetch-again")]


def test_badge_logic_in_javascript_applies_the_route_answer(fal, nodes, comfy, tmp_path):
    """The extension's logic (web/js/fal_audio_price_logic.js) run by node.js against a real answer of the route:
    which nodes it asks about, when it asks again (an edited widget), and the badge text it sets."""
    import shutil
    import subprocess

    from support import PACK_DIR

    if shutil.which("node") is None:
        pytest.skip("node.js is not installed")
    ace = defaults(nodes["FalAudioAceStep"], tags="lofi")
    graph = [{"id": 4, "type": "FalAudioAceStep", "widgets": ace},
             {"id": 5, "type": "FalAudioLyria2", "widgets": defaults(nodes["FalAudioLyria2"])},
             {"id": 6, "type": "PreviewAudio", "widgets": {}}]
    first = badge_answer(nodes, [g for g in graph if g["type"].startswith("FalAudio")])
    second = badge_answer(nodes, [{**graph[0], "widgets": {**ace, "duration": 180.0}}])
    script = tmp_path / "run.mjs"
    script.write_text(f"""
import * as logic from {json.dumps((PACK_DIR / 'web/js/fal_audio_price_logic.js').as_uri())};
const widgets = (values) => Object.entries(values).map(([name, value]) => ({{name, value}}));
const graph = {json.dumps(graph)}.map((n) => ({{id: n.id, type: n.type, widgets: widgets(n.widgets)}}));
const seen = new Map();
const out = {{}};
const asked = logic.changed(graph, seen);
out.firstBody = logic.requestBody(asked);
out.applied = logic.apply(asked, {json.dumps({"estimates": first})});
out.badges = graph.map((n) => n.falPrice ? n.falPrice.text : null);
out.again = logic.changed(graph, seen).length;
graph[0].widgets.find((w) => w.name === "duration").value = 180.0;
const edited = logic.changed(graph, seen);
out.editedIds = edited.map((n) => n.id);
logic.apply(edited, {json.dumps({"estimates": second})});
out.afterEdit = graph[0].falPrice.text;
out.tooltip = graph[0].falPrice.tooltip;
console.log(JSON.stringify(out));
""")
    result = json.loads(subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout)
    assert [n["type"] for n in result["firstBody"]["nodes"]] == ["FalAudioAceStep", "FalAudioLyria2"]
    assert result["firstBody"]["nodes"][0]["widgets"]["duration"] == 60.0
    assert result["applied"] == 2 and result["badges"] == ["≈$0.012", "≈$0.10", None]
    assert result["again"] == 0  # nothing edited: no new request
    assert result["editedIds"] == [4] and result["afterEdit"] == "≈$0.036"
    assert result["tooltip"] == "fal estimate · $0.0002/second · price: fal API (cached)"


def test_the_final_status_never_hides_the_runs_own_error(fal, nodes, comfy, monkeypatch):
    import sqlite3

    def broken(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(job_module.Job, "booked", property(broken, lambda self, value: None), raising=False)
    fal.set_handler("fal-ai/lyria2", lambda payload: (_ for _ in ()).throw(EmulatedError(500, {"detail": "GPU fell"})))
    with pytest.raises(Exception, match="GPU fell"):
        lyria(nodes)
    assert comfy.texts()[-1].startswith("Stopped after ")


def test_the_extension_imports_comfyuis_scripts_from_where_comfyui_serves_it():
    """ComfyUI serves web/ at /extensions/<pack folder>/: web/js/x.js must reach /scripts/app.js and /scripts/api.js."""
    import re
    import urllib.parse

    from support import PACK_DIR

    source = (PACK_DIR / "web" / "js" / "fal_audio_price.js").read_text()
    served = "http://127.0.0.1:8188/extensions/fal-audio/js/fal_audio_price.js"
    imports = {urllib.parse.urljoin(served, path) for path in re.findall(r'from "([^"]+)"', source)}
    assert imports == {"http://127.0.0.1:8188/scripts/app.js", "http://127.0.0.1:8188/scripts/api.js",
                       "http://127.0.0.1:8188/extensions/fal-audio/js/fal_audio_price_logic.js"}
