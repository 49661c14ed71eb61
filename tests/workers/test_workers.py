"""Issue 22: several ComfyUI workers (here: pack instances in separate processes, each with its own
data and output folders, as on separate machines) on one PostgreSQL database share the journal, the
ledger and the daily limit. Each test asserts on the submits fal saw, the books and what the user reads."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from books import books
from support import PACK_DIR, SUBMIT, defaults, lyria, pack_module, run_node

WORKER = (
    "import asyncio, json, sys\n"
    f"sys.path.insert(0, r'{PACK_DIR / 'tests'}')\n"
    "from support import load_pack, defaults\n"
    "node = load_pack().NODE_CLASS_MAPPINGS['FalAudioLyria2']\n"
    "prompt, seeds = sys.argv[1], json.loads(sys.argv[2])\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()  # go\n"
    "async def main():\n"
    "    runs = (node().generate(**defaults(node, prompt=prompt, seed=seed)) for seed in seeds)\n"
    "    return await asyncio.gather(*runs, return_exceptions=True)\n"
    "for result in asyncio.run(main()):\n"
    "    print(json.dumps(str(result) if isinstance(result, BaseException) else result[0]['waveform'].shape[-1]),"
    " flush=True)\n"
)


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def worker(tmp_path, name: str, prompt: str, seeds: list, **env) -> subprocess.Popen:
    """A worker process of its own (its data and output folders) on the shared database, running `prompt`
    once per seed at once; it prints one line per run: the samples it returned, or its error."""
    folder = tmp_path / name
    env = {**os.environ, "FAL_AUDIO_WORKER_NAME": name, "FAL_AUDIO_DATA_DIR": str(folder / "data"),
           "FAL_AUDIO_OUTPUT_DIR": str(folder / "out"), **env}
    process = subprocess.Popen([sys.executable, "-c", WORKER, prompt, json.dumps(seeds)], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def results(process: subprocess.Popen, go: bool = True) -> list:
    """Tell `process` to go (unless told already); what it printed."""
    out, _ = process.communicate("go\n" if go else None, timeout=90)
    assert process.returncode == 0, out
    return [json.loads(line) for line in out.splitlines()]


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_identical_request_on_two_workers_is_submitted_once(fal, short_file, postgres, tmp_path):
    fal.fault("POST", SUBMIT, delay_answer=1.0)  # the first worker is mid-submit when the second claims
    first = worker(tmp_path, "gpu-1", "one team", [7])
    first.stdin.write("go\n")
    first.stdin.flush()
    wait_for(lambda: fal.submissions or first.poll() is not None)
    ((owner, state),) = books("SELECT owner, state FROM requests")
    assert state == "submitting" and owner.endswith("@gpu-1")  # the claim names its worker
    second = worker(tmp_path, "gpu-2", "one team", [7])
    assert results(second) == [48000] and results(first, go=False) == [48000]
    assert len(fal.submissions) == 1
    # A worker on another machine cannot read the kept file the journal names (here: it is moved away): it
    # downloads fal's copy of the same request (no new charge) and keeps it.
    for name in ("gpu-1", "gpu-2"):
        (tmp_path / name / "out").rename(tmp_path / f"{name}-elsewhere")
    assert results(worker(tmp_path, "gpu-3", "one team", [7])) == [48000]
    assert len(fal.submissions) == 1 and len(list((tmp_path / "gpu-3" / "out").rglob("*.wav"))) == 1
    rows = books("SELECT state, worker, cost_usd FROM ledger ORDER BY id")
    assert [row[0] for row in rows].count("settled") == 1 and sum(row[2] or 0 for row in rows) == pytest.approx(0.1)
    assert ("reused", "gpu-3", 0) in rows


def test_a_worker_killed_mid_request_is_resumed_once_by_another(fal, nodes, short_file, postgres, tmp_path,
                                                               monkeypatch):
    fal.set_timing("fal-ai/lyria2", run_seconds=1.5)
    pack_module("money.journal").current().spent_today()  # the tables exist
    doomed = worker(tmp_path, "gpu-1", "money test", [0])
    doomed.stdin.write("go\n")
    doomed.stdin.flush()
    wait_for(lambda: books("SELECT 1 FROM requests WHERE state='submitted'") or doomed.poll() is not None)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(tmp_path / "gpu-2"))
    (audio,) = lyria(nodes, seed=0)
    assert audio["waveform"].shape[-1] == 48000
    assert len(fal.submissions) == 1 and fal.cancels == []  # resumed by request id, not resubmitted
    assert books("SELECT state, request_id FROM requests") == [("completed", fal.submissions[0].request_id)]


def test_four_workers_cannot_together_pass_the_teams_daily_limit(fal, short_file, postgres, tmp_path):
    # $0.10 a request, a limit of $0.50: 4 workers x 8 requests at once, exactly 5 paid.
    workers = [worker(tmp_path, f"gpu-{index}", "the team's limit", list(range(index * 8, index * 8 + 8)),
                      FAL_AUDIO_DAILY_LIMIT_USD="0.5") for index in range(4)]
    for process in workers:  # all at once
        process.stdin.write("go\n")
        process.stdin.flush()
    said = [line for process in workers for line in results(process, go=False)]
    assert said.count(48000) == 5, [line for line in said if "daily spend limit" not in str(line)]
    assert said.count(48000) == 5 and len(fal.submissions) == 5
    refusals = [line for line in said if line != 48000]
    assert len(refusals) == 27 and all("daily spend limit of $0.50" in line and "Nothing was sent" in line
                                       for line in refusals)
    report, today = pack_module("money.journal").current().spend_report(0.5)
    assert today == pytest.approx(0.5) and "$0 left today" in report, report
    # Refusals write nothing; each paid request names the worker that paid it.
    rows = books("SELECT state, worker FROM ledger")
    assert len(rows) == 5 and all(state == "settled" and worker.startswith("gpu-") for state, worker in rows)


def test_the_spend_report_names_each_worker(fal, nodes, short_file, postgres, monkeypatch):
    journal = pack_module("money.journal")
    for name, seed in (("studio-a", 1), ("studio-b", 2), ("studio-b", 3)):
        monkeypatch.setattr(journal, "WORKER", name)
        lyria(nodes, seed=seed)
    report, today = journal.current().spend_report()
    assert today == pytest.approx(0.3)
    lines = report.splitlines()
    start = lines.index("Per worker, last 7 days:")
    assert lines[start + 1:start + 3] == ["  studio-b: $0.20 in 2 paid, today $0.20",
                                          "  studio-a: $0.10 in 1 paid, today $0.10"]


def test_one_worker_has_no_per_worker_lines(fal, nodes, short_file, postgres):
    lyria(nodes, seed=1)
    assert "Per worker" not in pack_module("money.journal").current().spend_report()[0]


# --- the database out of reach -------------------------------------------------------------------------------

def test_an_unreachable_database_is_said_before_anything_is_uploaded_or_paid(fal, nodes, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("FAL_AUDIO_DATABASE_URL", f"postgresql://fal:s3cret-pw@127.0.0.1:{port}/books")
    pack_module("money.journal").forget_open()
    node = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000}
    with pytest.raises(Exception) as caught:
        run_node(node, **defaults(node, audio=clip, tags="rock", original_tags="pop"))
    message = str(caught.value)
    assert f"postgresql://fal:***@127.0.0.1:{port}/books" in message and "cannot be reached" in message
    assert "s3cret-pw" not in message and "Nothing was sent to fal" in message
    assert fal.submissions == [] and fal.uploads == []
    pack_module("money.journal").forget_open()


def test_a_missing_driver_is_named(fal, nodes, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    monkeypatch.setenv("FAL_AUDIO_DATABASE_URL", "postgresql://fal@db.example/books")
    pack_module("money.journal").forget_open()
    with pytest.raises(Exception, match=r'pip install "psycopg\[binary\]"') as caught:
        lyria(nodes)
    assert "postgresql://fal@db.example/books" in str(caught.value) and fal.submissions == []
    pack_module("money.journal").forget_open()


def test_the_database_going_away_mid_run_loses_nothing_from_the_books(fal, nodes, short_file, postgres,
                                                                      postgres_server):
    fal.set_timing("fal-ai/lyria2", run_seconds=1.0)
    pack_module("money.journal").current().spent_today()  # connected before
    comeback = []

    def stop_while_submitting(payload):
        postgres_server.stop()  # the database goes away while fal takes the request; back 1.5 s later
        comeback.append(threading.Timer(1.5, postgres_server.restart))
        comeback[0].start()
        return fal.file_result(seconds=1.0, rate=48000, channels=2)

    fal.set_handler("fal-ai/lyria2", stop_while_submitting)
    try:
        (audio,) = lyria(nodes)  # its accepted id and its result wait for the database, then are written
    finally:
        for timer in comeback:
            timer.join()
        if not postgres_server.running():  # the test stopped early: the next tests need it
            postgres_server.restart()
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1
    rid = fal.submissions[0].request_id
    assert books("SELECT state, request_id FROM requests") == [("completed", rid)]
    assert books("SELECT state, request_id, cost_usd FROM ledger") == [("settled", rid, pytest.approx(0.1))]
    lyria(nodes)  # a re-run reuses it: nothing lost
    assert len(fal.submissions) == 1
