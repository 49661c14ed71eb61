"""Issue 12, the journal under faults: locked by another program (case 3), shared by two
ComfyUI processes (case 4), damaged, or in an unusable folder (case 9)."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import torch

from books import books, journal_at
from support import PACK_DIR, defaults, pack_module, run_node

LYRIA = "FalAudioLyria2"
SUBMIT = r"queue\.fal\.run/fal-ai/lyria2$"


@pytest.fixture
def shared_dirs(tmp_path, monkeypatch, fal):
    """A data and output folder set by environment, so child processes share them."""
    data_dir, output_dir = tmp_path / "data", tmp_path / "out"
    monkeypatch.setenv("FAL_AUDIO_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(output_dir))
    return data_dir, output_dir


def journal_file(comfy):
    return comfy.user_dir / "fal-audio" / "journal.sqlite3"


def rows(path=None):
    """The journal's requests: (state, request id). `path`: a SQLite file of its own (a test of the file)."""
    if path is not None:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT state, request_id FROM requests").fetchall()
    return books("SELECT state, request_id FROM requests")


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Locker:
    """Another program holding the journal's write lock for a while (a real second process)."""

    def __init__(self, path, seconds):
        path.parent.mkdir(parents=True, exist_ok=True)
        script = (
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect(r'{path}', isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL')\n"
            "c.execute('CREATE TABLE IF NOT EXISTS other_program (x)')\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "c.execute('INSERT INTO other_program VALUES (1)')\n"
            "print('locked', flush=True)\n"
            f"time.sleep({seconds})\n"
            "c.execute('COMMIT')\n"
        )
        self.process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "locked"
        self.locked_at = time.monotonic()

    def wait(self):
        self.process.wait(timeout=60)


def lock_on_submit(fal, comfy, seconds, lockers):
    """Take the journal's lock while fal is accepting the request (before its answer goes out)."""
    def handler(payload):
        lockers.append(Locker(journal_file(comfy), seconds))
        return fal.file_result(seconds=1.0, rate=48000, channels=2)

    fal.set_handler("fal-ai/lyria2", handler)


# --- case 3: a locked journal never loses an accepted id, nor stalls the event loop ------------------

@pytest.mark.sqlite_only
def test_an_accepted_id_is_recorded_after_the_lock_outlasts_sqlites_busy_timeout(fal, nodes, comfy, monkeypatch):
    monkeypatch.setattr(pack_module("money.journal"), "BUSY_TIMEOUT", 0.3)
    pack_module("money.journal").forget_open()
    lockers = []
    lock_on_submit(fal, comfy, 2.0, lockers)
    node = nodes[LYRIA]
    gaps = []

    async def prompt():
        async def ticker():
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        try:
            return await node().generate(**defaults(node, prompt="locked journal"))
        finally:
            ticking.cancel()

    (audio,) = asyncio.run(prompt())
    lockers[0].wait()
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1
    assert rows(journal_file(comfy)) == [("completed", fal.submissions[0].request_id)]
    assert max(gaps) < 1.0  # the event loop went on while the journal was locked (2 s)
    # A re-run reuses it: the id was not lost.
    pack_module("money.journal").forget_open()
    run_node(node, **defaults(node, prompt="locked journal"))
    assert len(fal.submissions) == 1


@pytest.mark.sqlite_only
def test_cancel_is_noticed_within_a_second_while_the_id_waits_for_the_lock(fal, nodes, comfy):
    fal.set_timing("fal-ai/lyria2", run_seconds=30)
    lockers = []
    lock_on_submit(fal, comfy, 3.0, lockers)
    pressed = []

    def press():
        wait_for(lambda: lockers)
        time.sleep(0.5)
        pressed.append(time.monotonic())
        comfy.interrupt()

    threading.Thread(target=press, daemon=True).start()
    with pytest.raises(comfy.InterruptProcessingException):
        run_node(nodes[LYRIA], unique_id="1", **defaults(nodes[LYRIA], prompt="cancel on a locked journal"))
    assert time.monotonic() - pressed[0] < 1.8  # the lock is held 2.5 s more
    rid = fal.submissions[0].request_id
    assert fal.cancels == [rid] and fal.job(rid).state == "CANCELLED"  # not left billing
    lockers[0].wait()
    wait_for(lambda: rows(journal_file(comfy)) == [("failed", rid)])  # and the id was recorded after all


# --- case 4: two ComfyUI processes on one journal pay once ------------------------------------------------

CHILD = (
    "import asyncio, sys\n"
    f"sys.path.insert(0, r'{PACK_DIR / 'tests'}')\n"
    "from support import load_pack, defaults\n"
    "node = load_pack().NODE_CLASS_MAPPINGS['FalAudioLyria2']\n"
    "(audio,) = asyncio.run(node().generate(**defaults(node, prompt='two processes')))\n"
    "print('samples', audio['waveform'].shape[-1], flush=True)\n"
)


def test_a_second_process_waits_for_a_live_owner_instead_of_paying_again(fal, nodes, shared_dirs):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    fal.fault("POST", SUBMIT, delay_answer=2.0)  # the first process is mid-submit for a while
    first = subprocess.Popen([sys.executable, "-c", CHILD], env=dict(os.environ), stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fal.submissions or first.poll() is not None, 30)
        assert first.poll() is None
        (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="two processes"))
        out, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0 and "samples 48000" in out
    assert audio["waveform"].shape[-1] == 48000
    assert len(fal.submissions) == 1  # the second process followed the first one's request


def claim_in_another_process(node, prompt: str, data_dir, then: str) -> str:
    """Python code for a second process that claims the identity of `node` run with `prompt` in the shared
    journal, then runs `then`."""
    job_module = pack_module("jobs.job")
    planned = node().requests(defaults(node, prompt=prompt))
    options = pack_module("jobs.options").CallOptions()
    identity = job_module.Job(node.ENDPOINT, planned[0][0], options, None, take_key=planned[0][1]).identity
    return (
        "import os, sys\n"
        f"sys.path.insert(0, r'{PACK_DIR / 'tests'}')\n"
        "from support import pack_module\n"
        "journal = pack_module('money.journal')\n"
        f"assert journal.current().claim('{identity}', '{node.ENDPOINT}') is None\n"
        + then
    )


def test_the_claim_of_a_dead_process_is_taken_over_at_once(fal, nodes, shared_dirs):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    node = nodes[LYRIA]
    data_dir, _ = shared_dirs
    script = claim_in_another_process(node, "dead owner", data_dir,
                                      "os.kill(os.getpid(), 9)  # dies mid-submit, before anything reached fal\n")
    subprocess.run([sys.executable, "-c", script], env=dict(os.environ), check=False)
    assert rows() == [("submitting", None)]
    started = time.monotonic()
    (audio,) = run_node(node, **defaults(node, prompt="dead owner"))
    assert time.monotonic() - started < pack_module("money.journal").LEASE_SECONDS / 3
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


def test_a_live_owner_is_waited_for_until_it_is_gone(fal, nodes, shared_dirs):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    node = nodes[LYRIA]
    data_dir, _ = shared_dirs
    # Holds the claim until told to go (then exits without releasing it).
    script = claim_in_another_process(node, "live owner", data_dir,
                                      "print('claimed', flush=True)\nsys.stdin.readline()\n")
    owner = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "claimed"
        result = []
        runner = threading.Thread(target=lambda: result.append(run_node(node, **defaults(node, prompt="live owner"))))
        runner.start()
        time.sleep(1.5)
        assert fal.submissions == [] and runner.is_alive()  # waiting for the live owner, not paying
        owner.communicate("go\n", timeout=30)
        runner.join(30)
    finally:
        if owner.poll() is None:
            owner.kill()
    assert result and result[0][0]["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


def test_a_foreign_claim_is_taken_over_only_when_its_lease_ran_out(tmp_path):
    book = journal_at(tmp_path / "journal.sqlite3")
    assert book.claim("ours", "fal-ai/x") is None
    foreign = "v2|another-machine|4242|1234|abcd1234"
    for name, lease in (("live", time.time() + 20), ("expired", time.time() - 1)):
        books("INSERT INTO requests (identity, endpoint, state, owner, created, updated, lease)"
              " VALUES (?, 'fal-ai/x', 'submitting', ?, 0, 0, ?)", (name, foreign, lease), book)
    assert book.claim("live", "fal-ai/x").owner == foreign  # wait for it
    assert book.claim("expired", "fal-ai/x") is None  # its owner is gone: ours now

    def lease():
        return books("SELECT lease FROM requests WHERE identity='ours'", (), book)[0][0]

    before = lease()
    time.sleep(0.01)
    book.renew()
    after = lease()
    assert after > before  # the owner renews the leases of the claims it holds


# --- case 9: a damaged journal, an unusable data folder ---------------------------------------------------

@pytest.mark.sqlite_only
def test_a_damaged_journal_is_moved_aside_and_a_new_one_started(fal, nodes, comfy, captured_logs):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    path = journal_file(comfy)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, it was overwritten by something" * 100)
    (audio,) = run_node(nodes[LYRIA], unique_id="1", **defaults(nodes[LYRIA], prompt="damaged"))
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1
    (aside,) = path.parent.glob("journal.sqlite3.damaged-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert rows(path) == [("completed", fal.submissions[0].request_id)]
    assert any("journal was damaged" in text and aside.name in text for text in comfy.texts())
    assert any("journal was damaged" in r.getMessage() for r in captured_logs.records)


@pytest.mark.sqlite_only
def test_a_truncated_journal_is_moved_aside_and_a_new_one_started(fal, nodes, comfy):
    path = journal_file(comfy)
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE requests (identity TEXT PRIMARY KEY, endpoint TEXT, state TEXT, detail TEXT)")
        db.executemany("INSERT INTO requests VALUES (?, 'fal-ai/x', 'completed', ?)",
                       [(f"k{i}", "x" * 500) for i in range(200)])
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    (audio,) = run_node(nodes[LYRIA], unique_id="1", **defaults(nodes[LYRIA], prompt="truncated"))
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1
    assert len(list(path.parent.glob("journal.sqlite3.damaged-*"))) == 1
    assert any("journal was damaged" in text for text in comfy.texts())


@pytest.mark.sqlite_only
def test_an_unusable_data_folder_is_refused_before_anything_is_uploaded_or_paid(fal, nodes, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("FAL_AUDIO_DATA_DIR", str(blocker))
    node = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000}
    with pytest.raises(Exception) as caught:
        run_node(node, **defaults(node, audio=clip, tags="rock", original_tags="pop"))
    message = str(caught.value)
    assert str(blocker) in message and "FAL_AUDIO_DATA_DIR" in message and "Nothing was sent" in message
    assert fal.submissions == [] and fal.uploads == []
