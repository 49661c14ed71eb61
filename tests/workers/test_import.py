"""Issue 22, moving over: a journal kept on one machine (SQLite) is copied into the shared database, once."""

import sqlite3
import subprocess
import sys

import pytest

from books import books
from support import PACK_DIR, lyria, pack_module

SCRIPT = PACK_DIR / "scripts" / "import_journal.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_a_sqlite_journal_is_imported_once_and_its_results_and_spend_carry_over(fal, nodes, comfy, postgres,
                                                                             monkeypatch):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    journal = pack_module("money.journal")
    monkeypatch.delenv("FAL_AUDIO_DATABASE_URL")  # first on the machine's own SQLite journal
    journal.forget_open()
    lyria(nodes, seed=1)
    lyria(nodes, seed=2)
    lyria(nodes, seed=1)  # reused
    source = comfy.user_dir / "fal-audio" / "journal.sqlite3"
    before = journal.current().spend_report()[1]
    assert before == pytest.approx(0.2) and len(fal.submissions) == 2

    with sqlite3.connect(source) as db:  # a row from before workers were named: booked to --worker
        db.execute("UPDATE ledger SET worker=NULL WHERE state='reused'")
    secret_url = postgres.replace("postgres@", "postgres:pw-not-shown@")  # trust auth: any password does
    first = run(str(source), "--url", secret_url, "--worker", "old-box")
    assert first.returncode == 0, first.stderr
    assert "Copied 2 requests, 3 ledger rows and 0 uploads" in first.stdout and "pw-not-shown" not in first.stdout
    again = run(str(source), "--url", postgres)
    assert "Copied 0 requests, 0 ledger rows and 0 uploads" in again.stdout

    monkeypatch.setenv("FAL_AUDIO_DATABASE_URL", postgres)  # now on the shared database
    journal.forget_open()
    here = journal.WORKER
    assert sorted(books("SELECT state, worker, request_id FROM ledger")) == sorted(
        [("settled", here, fal.submissions[0].request_id), ("settled", here, fal.submissions[1].request_id),
         ("reused", "old-box", fal.submissions[0].request_id)])
    assert journal.current().spend_report()[1] == pytest.approx(before)
    (audio,) = lyria(nodes, seed=2)  # the kept result is reused from the shared books: nothing paid
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 2


def test_importing_a_file_that_is_not_there_says_so(postgres, tmp_path):
    done = run(str(tmp_path / "nowhere.sqlite3"), "--url", postgres)
    assert done.returncode == 1 and "There is no journal at" in done.stderr


def test_the_database_is_taken_from_a_credentials_profile_beside_the_journal(fal, nodes, comfy, postgres_server,
                                                                            monkeypatch):
    import json

    from support import CANARY_KEY

    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))
    pack_module("money.journal").forget_open()
    lyria(nodes, seed=1)
    source = comfy.user_dir / "fal-audio" / "journal.sqlite3"
    url = postgres_server.empty_books()
    secret_url = url.replace("postgres@", "postgres:pw-not-shown@")
    (source.parent / "credentials.json").write_text(json.dumps(
        {"default": CANARY_KEY, "team": {"key": CANARY_KEY, "database_url": secret_url}}))
    done = run(str(source), "--profile", "team")
    assert done.returncode == 0, done.stderr
    assert "Copied 1 requests, 1 ledger rows and 0 uploads" in done.stdout
    assert f"into {secret_url.replace('pw-not-shown', '***')} (profile 'team' in {source.parent}" in done.stdout
    assert "pw-not-shown" not in done.stdout + done.stderr
    pack_module("money.journal").forget_open()
    assert books("SELECT state FROM ledger", (), pack_module("money.journal").Journal(url=url)) == [("settled",)]
    unknown = run(str(source), "--profile", "home")
    assert unknown.returncode == 1 and "'home'" in unknown.stderr and "default, team" in unknown.stderr
    nothing = run(str(source))  # the default profile names no database
    assert nothing.returncode == 2 and "database_url of a credentials profile (--profile)" in nothing.stderr
