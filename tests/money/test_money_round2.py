"""Issue 18, cases 1-5 (and the log half of 11): the ledger and the daily limit never undercount.
Each test asserts on the ledger, the fal Spend report, the daily limit and the submits fal saw."""

import datetime
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from books import books
from support import LYRIA, PACK_DIR, SUBMIT, defaults, lyria, pack_module, run_node

STATUS = r"/requests/[^/]+/status(/stream)?$"
DASHBOARD = "https://fal.ai/dashboard"


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def journal_path(comfy):
    return comfy.user_dir / "fal-audio" / "journal.sqlite3"


def ledger_rows():
    return books("SELECT state, estimate_usd, cost_usd, day FROM ledger ORDER BY id")


def submits(fal):
    """Every submit that went out to fal (also those whose answer was lost)."""
    return [r for r in fal.requests if r == ("POST", "queue.fal.run/fal-ai/lyria2")]


def limited(nodes, limit):
    cls = nodes["FalAudioClient"]
    (options,) = run_node(cls, **defaults(cls, daily_spend_limit_usd=limit))
    return options


def spend_report(nodes, options=None):
    out = run_node(nodes["FalAudioSpend"], unique_id="9", **({"fal_client": options} if options else {}))
    return out["result"]


def restart():
    """What a ComfyUI restart forgets: the open journal of this process."""
    pack_module("money.journal").forget_open()


# --- case 1: an uncertain submit counts as possibly billed ----------------------------------------

@pytest.mark.parametrize("fault", [dict(close=True), dict(status=500, body={"detail": "internal error"}),
                                   dict(status=502, body={"detail": "bad gateway"})])
def test_an_uncertain_submit_is_booked_as_possibly_billed_and_counts_against_the_limit(
        fal, nodes, short_file, comfy, fault):
    options = limited(nodes, 0.15)
    fal.fault("POST", SUBMIT, **fault)
    with pytest.raises(Exception) as caught:
        lyria(nodes, seed=1, fal_client=options)
    message = str(caught.value)
    assert "may or may not be running" in message and DASHBOARD in message
    assert "possibly billed (≈$0.10)" in message and "today's spend limit" in message
    assert "≈$0.10 possibly billed" in comfy.texts()[-1]  # the final status
    assert [row[:2] for row in ledger_rows()] == [("uncertain", pytest.approx(0.10))]
    report, today = spend_report(nodes, options)
    assert today == pytest.approx(0.10)
    assert "1 possibly billed" in report and "$0.05 left today" in report
    # The re-run the message asks for is a second request: the limit sees both (never passed by more than one).
    with pytest.raises(pack_module("money.ledger").SpendLimitReached, match=r"recorded spend of \$0.10"):
        lyria(nodes, seed=1, fal_client=options)
    (audio,) = lyria(nodes, seed=1)  # no limit: submitted anew
    assert audio["waveform"].shape[-1] == 48000 and len(submits(fal)) == 2
    assert spend_report(nodes)[1] == pytest.approx(0.20)


# --- case 2: a crash inside the submit round trip is not silently resent ---------------------------

CHILD = (
    "import asyncio, sys\n"
    f"sys.path.insert(0, r'{PACK_DIR / 'tests'}')\n"
    "from support import load_pack, defaults\n"
    "node = load_pack().NODE_CLASS_MAPPINGS['FalAudioLyria2']\n"
    "asyncio.run(node().generate(**defaults(node, prompt='crash mid-submit')))\n"
)


def test_a_process_that_died_mid_submit_is_not_resent_silently(fal, nodes, short_file, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.setenv("FAL_AUDIO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(tmp_path / "out"))
    fal.fault("POST", SUBMIT, delay_answer=30.0)  # fal takes the request; its answer never reaches the child
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while not fal.submissions and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert fal.submissions
        time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    node = nodes[LYRIA]
    inputs = defaults(node, prompt="crash mid-submit")
    with pytest.raises(Exception) as caught:
        run_node(node, unique_id="1", **inputs)
    message = str(caught.value)
    assert "an earlier run may have been billed" in message and DASHBOARD in message
    assert len(submits(fal)) == 1  # nothing sent
    assert [row[:2] for row in ledger_rows()] == [("uncertain", pytest.approx(0.10))]
    report, today = spend_report(nodes)
    assert today == pytest.approx(0.10) and "1 possibly billed" in report
    with pytest.raises(pack_module("money.ledger").SpendLimitReached):
        run_node(node, unique_id="1", fal_client=limited(nodes, 0.15), **inputs)
    (audio,) = run_node(node, unique_id="1", **inputs)  # a re-run after the message submits anew
    assert audio["waveform"].shape[-1] == 48000 and len(submits(fal)) == 2
    assert spend_report(nodes)[1] == pytest.approx(0.20)


def test_twins_of_one_prompt_both_stop_at_a_dead_claim_that_was_sent(fal, nodes, short_file, comfy):
    """The claim step itself holds the message for the prompt: the twin that claims right after the
    first one found the dead claim does not take it over and submit."""
    import asyncio

    node = nodes[LYRIA]
    inputs = defaults(node, prompt="twins at a dead claim")
    job_module = pack_module("jobs.job")
    planned = node().requests(inputs)
    identity = job_module.Job(node.ENDPOINT, planned[0][0], pack_module("jobs.options").CallOptions(), None,
                              take_key=planned[0][1]).identity
    book = pack_module("money.journal").current()
    assert book.claim(identity, node.ENDPOINT) is None
    book.sending(identity)
    dead = "v2|another-machine|4242|1234|abcd1234"
    books("UPDATE requests SET owner=?, lease=? WHERE identity=?", (dead, time.time() - 1, identity))
    books("UPDATE ledger SET estimate_usd=0.1 WHERE identity=?", (identity,))

    async def prompt():
        return await asyncio.gather(node().generate(**inputs), node().generate(**inputs), return_exceptions=True)

    results = asyncio.run(prompt())
    assert all("an earlier run may have been billed" in str(r) for r in results), results
    assert submits(fal) == [] and spend_report(nodes)[1] == pytest.approx(0.10)
    (audio,) = run_node(node, **inputs)  # a new prompt submits anew
    assert audio["waveform"].shape[-1] == 48000 and len(submits(fal)) == 1


# --- case 3: a damaged journal does not reset today's spend ------------------------------------------

def damage_the_requests_table(path):
    """Overwrite the requests table's pages: the journal is damaged, its ledger table still reads."""
    restart()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        roots = [r for (r,) in db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name='requests'")]
        (size,) = db.execute("PRAGMA page_size").fetchone()
    with open(path, "r+b") as handle:
        for root in roots:
            handle.seek((root - 1) * size)
            handle.write(b"\xff" * size)


def overwrite(path):
    restart()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    path.write_bytes(b"this is not a database, it was overwritten by something" * 100)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("damage", [damage_the_requests_table, overwrite])
def test_a_damaged_journal_keeps_todays_spend_and_limit(fal, nodes, short_file, comfy, damage):
    lyria(nodes, seed=1)
    damage(journal_path(comfy))
    lyria(nodes, seed=2)
    (aside,) = [p for p in journal_path(comfy).parent.glob("journal.sqlite3.damaged-*") if p.name[-4] != "-"]
    notice = next(text for text in comfy.texts() if "journal was damaged" in text)
    assert aside.name in notice and "Today's spend of $0.10 was kept" in notice and "daily limit" in notice
    options = limited(nodes, 0.25)
    with pytest.raises(pack_module("money.ledger").SpendLimitReached, match=r"recorded spend of \$0.20"):
        lyria(nodes, seed=3, fal_client=options)
    assert len(submits(fal)) == 2
    report, today = spend_report(nodes, options)
    assert today == pytest.approx(0.20) and "$0.05 left today" in report


@pytest.mark.sqlite_only
def test_a_journal_damaged_beyond_reading_without_its_spend_note_says_the_limit_starts_again(
        fal, nodes, short_file, comfy):
    lyria(nodes, seed=1)
    overwrite(journal_path(comfy))
    journal_path(comfy).with_name("journal.sqlite3.spend").unlink()
    lyria(nodes, seed=2)
    notice = next(text for text in comfy.texts() if "journal was damaged" in text)
    assert "could not be read back, so the daily limit counts from $0 again" in notice
    assert spend_report(nodes)[1] == pytest.approx(0.10) and len(submits(fal)) == 2


# --- case 4: requests are booked on the day they are paid ---------------------------------------------

def test_a_request_finished_after_midnight_is_booked_on_the_later_day(fal, nodes, comfy, monkeypatch):
    first = datetime.date(2026, 12, 7)
    day = {"today": first}

    class Clock(datetime.date):
        @classmethod
        def today(cls):
            return day["today"]

    monkeypatch.setattr(datetime, "date", Clock)

    def midnight_passes(payload):
        day["today"] = first + datetime.timedelta(days=1)
        return fal.file_result(seconds=1.0, rate=48000, channels=2)

    fal.set_handler("fal-ai/lyria2", midnight_passes)
    options = limited(nodes, 0.15)
    lyria(nodes, seed=1, fal_client=options)
    assert [(row[0], row[3]) for row in ledger_rows()] == [("settled", "2026-12-08")]
    assert spend_report(nodes, options)[1] == pytest.approx(0.10)
    with pytest.raises(pack_module("money.ledger").SpendLimitReached, match=r"recorded spend of \$0.10"):
        lyria(nodes, seed=2, fal_client=options)
    day["today"] = first
    assert spend_report(nodes, options)[1] == 0
    assert len(submits(fal)) == 1


# --- case 5: a status 404 right after an accepted submit is not a failure at once ------------------------

def test_a_brief_404_of_the_status_after_the_submit_is_waited_out(fal, nodes, short_file, comfy):
    fal.fault("GET", STATUS, status=404, body={"detail": "Request not found"}, times=3)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(submits(fal)) == 1
    assert [row[0] for row in ledger_rows()] == ["settled"]
    assert spend_report(nodes)[1] == pytest.approx(0.10)


def test_a_lasting_404_is_cancelled_and_booked_as_possibly_billed(fal, nodes, short_file, comfy, monkeypatch):
    monkeypatch.setattr(pack_module("jobs.waiting"), "UNKNOWN_GRACE", 0.5)
    fal.set_timing("fal-ai/lyria2", run_seconds=30.0)
    fal.fault("GET", STATUS, status=404, body={"detail": "Request not found"}, times=-1)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert time.monotonic() - started < 10
    rid = fal.submissions[0].request_id
    assert ("PUT", f"queue.fal.run/fal-ai/lyria2/requests/{rid}/cancel") in fal.requests
    message = str(caught.value)
    assert f"fal.ai does not know request {rid}" in message and "possibly billed (≈$0.10)" in message
    assert DASHBOARD in message
    assert [row[:2] for row in ledger_rows()] == [("uncertain", pytest.approx(0.10))]
    report, today = spend_report(nodes)
    assert today == pytest.approx(0.10) and "1 possibly billed" in report
    assert len(submits(fal)) == 1


# --- case 11 (second half): fal's log lines are plain text in the progress ------------------------------

def test_log_lines_in_the_progress_text_are_plain_text(fal, nodes, short_file, comfy):
    line = "<img src=x onerror=alert(1)>step 3/10 \x1b[31m<b>hot</b> & cold\x00\r" + "x" * 500
    fal.set_timing("fal-ai/lyria2", run_seconds=0.6, logs=[line])
    lyria(nodes)
    running = [text for text in comfy.texts() if text.startswith("Running")]
    assert running
    for text in running:
        assert not any(c in text for c in "<>\x1b\x00\r") and len(text) < 260
    assert any("step 3/10 hot & cold" in text for text in running)
