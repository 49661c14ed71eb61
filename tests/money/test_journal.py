"""Issue 4: nothing paid for is lost or paid twice. One test per fault, each asserting what
the user sees and how many requests fal received."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import torch

from books import books, journal_at
from fal_emulator import EmulatedError
from support import FILES, LYRIA, PACK_DIR, RESULT, SUBMIT, defaults, lyria, pack_module, run_node

STATUS = r"/requests/[^/]+/status$"


def interrupt_after(comfy, seconds, when=lambda: True):
    def press():
        while not when():
            time.sleep(0.01)
        time.sleep(seconds)
        comfy.interrupt()

    threading.Thread(target=press, daemon=True).start()


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def kept_files(comfy):
    folder = comfy.output_dir / "fal-audio"
    return sorted(folder.iterdir()) if folder.exists() else []


# --- faults on the way in -------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 502])
def test_rejected_submit_is_retried_once_accepted(fal, nodes, short_file, status):
    fal.fault("POST", SUBMIT, status=status, times=2)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape == (1, 2, 48000)
    assert len(fal.submissions) == 1


def test_connection_lost_after_submit_is_never_resent(fal, nodes, short_file):
    fal.fault("POST", SUBMIT, close=True)
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "may or may not be running" in str(caught.value) and "not resent" in str(caught.value)
    assert [r for r in fal.requests if r[0] == "POST" and "lyria2" in r[1]] == [("POST", "queue.fal.run/fal-ai/lyria2")]


def test_connection_closed_during_status_is_retried(fal, nodes, short_file):
    fal.fault("GET", STATUS, close=True, times=2)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


def test_500_on_result_is_retried(fal, nodes, short_file):
    fal.fault("GET", RESULT, status=500, body={"detail": "internal"}, times=2)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


# --- faults on the way out ------------------------------------------------------------------

def test_truncated_download_is_resumed_and_whole(fal, nodes, short_file, comfy):
    fal.fault("GET", FILES, truncate=True, times=2)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape == (1, 2, 48000)
    assert len(fal.submissions) == 1 and len(kept_files(comfy)) == 1


def test_truncated_download_is_never_decoded_and_rerun_costs_nothing(fal, nodes, short_file, comfy, monkeypatch):
    monkeypatch.setattr(pack_module("transport.gateway"), "DOWNLOAD_BACKOFF", 0.01)  # same retries, shorter pauses
    fal.fault("GET", FILES, truncate=True, times=5)
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "could not be downloaded" in str(caught.value) and "no new charge" in str(caught.value)
    assert not [p for p in kept_files(comfy) if not p.name.endswith(".part")]
    (audio,) = lyria(nodes)  # the faults are used up: the same inputs fetch the paid result
    assert audio["waveform"].shape == (1, 2, 48000) and len(fal.submissions) == 1


def test_corrupt_file_is_kept_and_its_path_given(fal, nodes, comfy):
    url = fal.add_file(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 100, "output.wav", "audio/wav")
    fal.set_handler("fal-ai/lyria2", lambda payload: {"audio": {"url": url}})
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    (kept,) = kept_files(comfy)
    assert "could not be decoded" in str(caught.value) and str(kept) in str(caught.value)
    assert kept.read_bytes().startswith(b"RIFF") and "fal-ai_lyria2_" in kept.name
    assert fal.submissions[0].request_id in kept.name


def test_job_failed_on_fal_is_reported_and_not_reused(fal, nodes):
    def fail(payload):
        raise EmulatedError(500, {"detail": "CUDA out of memory"})

    fal.set_handler("fal-ai/lyria2", fail)
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "fal-ai/lyria2" in str(caught.value) and "failed" in str(caught.value)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5))
    lyria(nodes)
    assert len(fal.submissions) == 2  # a failed request is not reused


# --- cancel at every stage --------------------------------------------------------------------

def test_cancel_during_upload_sends_nothing(fal, nodes, comfy):
    fal.fault("POST", r"v3\.fal\.media/files/upload", delay=5)
    node = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.zeros(1, 2, 8000) + 0.1, "sample_rate": 8000}
    interrupt_after(comfy, 0.3)
    started = time.monotonic()
    with pytest.raises(comfy.InterruptProcessingException):
        run_node(node, **defaults(node, audio=clip, tags="rock", original_tags="pop"))
    assert time.monotonic() - started < 2.0
    assert fal.submissions == []


def test_cancel_while_queued_cancels_on_fal(fal, nodes, comfy, short_file):
    fal.set_timing("fal-ai/lyria2", stuck_in_queue=True)
    interrupt_after(comfy, 0.3, when=lambda: fal.submissions)
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes)
    assert fal.cancels == [fal.submissions[0].request_id]


def test_cancel_during_download_keeps_the_paid_result(fal, nodes, comfy, short_file):
    fal.fault("GET", FILES, delay=5)
    interrupt_after(comfy, 0.3, when=lambda: fal.downloads or any("files/" in path for _, path in fal.requests))
    started = time.monotonic()
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes)
    assert time.monotonic() - started < 3.0
    assert fal.cancels == []  # finished and paid: nothing to cancel
    (audio,) = lyria(nodes)  # the next run fetches it without a new request
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


# --- runs, re-runs, restarts --------------------------------------------------------------------

def test_same_inputs_again_reuse_the_kept_result(fal, nodes, short_file, comfy):
    (first,) = lyria(nodes, seed=3)
    (again,) = lyria(nodes, seed=3)
    assert len(fal.submissions) == 1 and torch.equal(first["waveform"], again["waveform"])
    assert any("no new charge" in t for t in comfy.texts())
    lyria(nodes, seed=4)  # a new seed is a new take
    assert len(fal.submissions) == 2


def test_rerun_after_restart_submits_nothing(fal, nodes, short_file):
    lyria(nodes, seed=5)
    pack_module("money.journal").forget_open()  # a restarted ComfyUI opens the journal afresh
    lyria(nodes, seed=5)
    assert len(fal.submissions) == 1


def test_two_identical_nodes_at_once_pay_once(fal, nodes, short_file):
    fal.set_timing("fal-ai/lyria2", run_seconds=0.5)
    node = nodes[LYRIA]
    inputs = defaults(node, prompt="twins")

    async def both():
        return await asyncio.gather(node().generate(**inputs), node().generate(**inputs))

    first, second = asyncio.run(both())
    assert len(fal.submissions) == 1
    assert torch.equal(first[0]["waveform"], second[0]["waveform"])


def test_crash_while_in_flight_resumes_the_same_request(fal, nodes, short_file, tmp_path, monkeypatch):
    """ComfyUI killed mid-wait: the next run with the same inputs polls the same request id."""
    fal.set_timing("fal-ai/lyria2", run_seconds=1.5)
    data_dir, output_dir = tmp_path / "data", tmp_path / "out"
    monkeypatch.setenv("FAL_AUDIO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(output_dir))
    script = (
        "import asyncio, sys\n"
        f"sys.path.insert(0, r'{PACK_DIR / 'tests'}')\n"
        "from support import load_pack, defaults\n"
        "node = load_pack().NODE_CLASS_MAPPINGS['FalAudioLyria2']\n"
        "asyncio.run(node().generate(**defaults(node, prompt='money test')))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    deadline = time.monotonic() + 30

    def child_has_the_request_id():
        try:
            return books("SELECT 1 FROM requests WHERE state='submitted'") != []
        except Exception:  # noqa: BLE001 - not created yet
            return False

    while not child_has_the_request_id() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert len(fal.submissions) == 1 and fal.cancels == []
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000
    assert len(fal.submissions) == 1  # resumed, not resubmitted
    assert any(path.endswith(fal.submissions[0].request_id) for _, path in fal.requests)


def test_resume_of_a_request_fal_never_had_submits_anew(fal, nodes, short_file):
    journal_module = pack_module("money.journal")
    job_module = pack_module("jobs.job")
    node = nodes[LYRIA]
    planned = node().requests(defaults(node, prompt="money test"))
    options = pack_module("jobs.options").CallOptions()
    job = job_module.Job(node.ENDPOINT, planned[0][0], options, None, take_key=planned[0][1])
    book = job.book
    assert book.claim(job.identity, node.ENDPOINT) is None
    book.submitted(job.identity, "00000000-dead-beef-0000-000000000000")
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1
    assert book.get(job.identity).state == journal_module.COMPLETED


def test_overall_timeout_leaves_a_running_job_for_the_next_run(fal, nodes, short_file):
    fal.set_timing("fal-ai/lyria2", run_seconds=1.5)
    options = pack_module("jobs.options").CallOptions(overall_timeout=0.3)
    with pytest.raises(TimeoutError) as caught:
        lyria(nodes, fal_client=options)
    assert "overall timeout" in str(caught.value) and "left running" in str(caught.value)
    assert fal.cancels == []
    time.sleep(1.3)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


def test_same_clip_is_uploaded_once(fal, nodes):
    node = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.rand(1, 2, 8000) - 0.5, "sample_rate": 8000}
    for seed in (1, 2):
        run_node(node, **defaults(node, audio=clip, tags="rock", original_tags="pop", seed=seed))
    assert len(fal.submissions) == 2 and len(fal.uploads) == 1
    assert fal.submissions[0].payload["audio_url"] == fal.submissions[1].payload["audio_url"] == fal.uploads[0].url


# --- the journal itself ------------------------------------------------------------------------

def test_concurrent_claims_let_exactly_one_writer_submit(tmp_path):
    path = tmp_path / "journal.sqlite3"
    owners = []

    def claim(index):
        book = journal_at(path)  # one connection per writer, like separate prompts
        for key in range(20):
            if book.claim(f"identity-{key}", "fal-ai/x") is None:
                owners.append((key, index))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = sorted(key for key, _ in owners)
    assert claimed == list(range(20))  # every identity claimed once, never twice


def test_a_claim_is_held_from_the_moment_another_connection_can_see_it(tmp_path, monkeypatch):
    # Another connection of this process that reads our fresh claim must find it held by a live task of
    # ours; a claim it could see before we marked it held looked "left by a task that is gone" and was
    # taken over: two submits.
    journal = pack_module("money.journal")
    path = tmp_path / "journal.sqlite3"
    original_hold, rival = journal.Journal._hold, {}

    def hold_while_a_rival_claims(self, key):
        if not rival:
            def claim_too():
                rival["entry"] = journal_at(path).claim(key, "fal-ai/x")
            rival["thread"] = threading.Thread(target=claim_too)
            rival["thread"].start()
            rival["thread"].join(0.5)  # it runs now, or waits for our transaction
        original_hold(self, key)

    monkeypatch.setattr(journal.Journal, "_hold", hold_while_a_rival_claims)
    assert journal_at(path).claim("identity-1", "fal-ai/x") is None
    rival["thread"].join(10)
    assert rival["entry"] is not None and rival["entry"].state == "submitting"  # it waits, it does not submit


@pytest.mark.sqlite_only
def test_many_connections_opening_a_brand_new_journal_at_once_all_open_it(tmp_path):
    # Switching a new file to WAL answers "locked" at once (no busy wait) to all but one of the connections
    # racing to create it: two prompts or two ComfyUI processes starting on an empty data folder.
    journal = pack_module("money.journal")
    errors = []
    for round_ in range(30):
        path = tmp_path / f"round-{round_}" / "journal.sqlite3"
        start = threading.Barrier(8)

        def open_it():
            start.wait()
            try:
                journal.Journal(path)._connect()
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


@pytest.mark.sqlite_only
def test_a_torn_write_leaves_the_journal_usable(tmp_path):
    journal = pack_module("money.journal")
    path = tmp_path / "journal.sqlite3"
    book = journal.Journal(path)
    assert book.claim("kept", "fal-ai/x") is None
    book.submitted("kept", "req-1")
    # A process dies in the middle of a transaction (after writing, before commit).
    script = (
        "import os, sqlite3\n"
        f"c = sqlite3.connect(r'{path}', isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "c.execute(\"UPDATE requests SET state='completed', request_id='torn' WHERE identity='kept'\")\n"
        "c.execute(\"INSERT INTO requests (identity, endpoint, state, created, updated) "
        "VALUES ('half', 'x', 'submitting', 0, 0)\")\n"
        "os._exit(1)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    fresh = journal.Journal(path)
    entry = fresh.get("kept")
    assert (entry.state, entry.request_id) == ("submitted", "req-1")
    assert fresh.get("half") is None
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_takes_sharing_a_clip_upload_it_once(fal, nodes):
    node = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000}
    run_node(node, **defaults(node, audio=clip, tags="rock", original_tags="pop", takes=3))
    assert len(fal.submissions) == 3 and len(fal.uploads) == 1


def test_cancel_refused_as_already_completed_keeps_the_paid_request(fal, nodes, comfy, short_file):
    """Cancel loses the race with completion: fal says ALREADY_COMPLETED, so the request is paid
    for; the journal must keep it so the next run fetches it instead of paying again."""
    fal.set_timing("fal-ai/lyria2", run_seconds=1.0)
    fal.fault("PUT", r"/cancel$", status=400, body={"status": "ALREADY_COMPLETED"})
    interrupt_after(comfy, 0.2, when=lambda: fal.submissions)
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


def test_confirmed_cancel_is_not_reused(fal, nodes, comfy, short_file):
    fal.set_timing("fal-ai/lyria2", run_seconds=30)
    interrupt_after(comfy, 0.2, when=lambda: fal.submissions)
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes)
    fal.set_timing("fal-ai/lyria2", run_seconds=0)
    lyria(nodes)
    assert len(fal.submissions) == 2 and len(fal.cancels) == 1


@pytest.mark.sqlite_only
def test_only_steps_recording_money_spent_are_synced_to_disk_at_their_commit(fal, nodes, short_file, monkeypatch):
    """A claim (with its reservation), the mark before the submit goes out or a refined cost is synced
    with the next record of money spent (same WAL), which saves an fsync each; an accepted request id and
    a result (each with its ledger row, in the same transaction) are synced at once."""
    journal_module = pack_module("money.journal")
    levels = {}

    def watch(cls, name):
        original = getattr(cls, name)
        label = f"{cls.__name__.lower()} {name}"

        def step(self, *args, **kwargs):
            level = self._connect().execute("PRAGMA synchronous").fetchone()[0]
            levels.setdefault(label, set()).add({1: "NORMAL", 2: "FULL"}[level])
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, step)

    for name in ("claim", "sending", "submitted", "completed", "settle"):
        watch(journal_module.Journal, name)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000
    assert levels == {"journal claim": {"NORMAL"}, "journal sending": {"NORMAL"}, "journal submitted": {"FULL"},
                      "journal completed": {"FULL"}, "journal settle": {"NORMAL"}}
    book = pack_module("money.journal").current()
    outside = book._connect().execute("PRAGMA synchronous").fetchone()[0]
    assert outside == 2  # outside a journal step (e.g. the Spend node's reads): FULL, the safe default
