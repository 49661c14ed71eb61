"""Issue 22: the database of the books named by a credentials file's profile (`database_url`) instead of the
environment. Each run's books are those of its fal Client's profile (the environment wins for every run); the
password is never said; an unreachable database is said before anything is uploaded or paid."""

import asyncio
import json
import socket

import pytest
import torch

from books import books, stored_text
from support import CANARY_KEY, defaults, lyria, pack_module, run_node

PASSWORD = "team-pw-not-shown"


@pytest.fixture
def journal():
    module = pack_module("money.journal")
    module.forget_open()
    yield module
    module.forget_open()


@pytest.fixture
def team_url(postgres_server, journal):
    """The test server's database, empty, as a URL with a password (the server trusts any)."""
    return postgres_server.empty_books().replace("postgres@", f"postgres:{PASSWORD}@")


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def credentials(tmp_path, monkeypatch, profiles: dict):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(profiles))
    monkeypatch.setenv("FAL_AUDIO_CREDENTIALS", str(path))
    return path


def client(nodes, profile: str):
    cls = nodes["FalAudioClient"]
    return run_node(cls, **defaults(cls, profile=profile))[0]


def unused_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_profiles_database_holds_the_books_of_its_runs_and_the_others_stay_in_the_file(
        fal, nodes, comfy, short_file, team_url, journal, tmp_path, monkeypatch, captured_logs):
    credentials(tmp_path, monkeypatch, {"default": CANARY_KEY,
                                        "team": {"key": CANARY_KEY, "database_url": team_url},
                                        "team-too": {"key": CANARY_KEY, "database_url": team_url}})
    team, team_too = client(nodes, "team"), client(nodes, "team-too")
    lyria(nodes, seed=1, fal_client=team)
    lyria(nodes, seed=1, fal_client=team_too)  # the same database: the kept result is reused, nothing paid
    lyria(nodes, seed=2)  # the default profile names no database: the SQLite file in the user folder
    assert len(fal.submissions) == 2
    shared = journal.Journal(url=team_url)
    assert sorted(books("SELECT state FROM ledger", (), shared)) == [("reused",), ("settled",)]
    assert books("SELECT state FROM ledger", (), journal.Journal(comfy.user_dir / "fal-audio" / "journal.sqlite3")) \
        == [("settled",)]
    # One journal per database in the process, whichever profile named it.
    assert team.books() is team_too.books() is not pack_module("jobs.options").CallOptions().books()

    # The fal Spend node and the fal panel read the books of the fal Client they are given (the panel: the newest
    # run's), without the password anywhere.
    report = run_node(nodes["FalAudioSpend"], fal_client=team, unique_id="9")["result"][0]
    assert "in 1 paid request" in report
    panel = pack_module("editor.panel")
    lyria(nodes, seed=1, fal_client=team)  # the newest run is the team's
    spend = asyncio.run(panel.spend())
    assert spend["today"]["usd"] == pytest.approx(0.1) and len(fal.submissions) == 2
    assert [(r["request_id"], r["reused"]) for r in panel.recent()["results"]] == [
        (fal.submissions[0].request_id, True), (fal.submissions[0].request_id, True),
        (fal.submissions[0].request_id, False)]
    said = json.dumps(spend) + json.dumps(panel.recent()) + report + stored_text(shared) + captured_logs.text
    assert PASSWORD not in said


def test_the_environment_wins_over_every_profile(fal, nodes, comfy, short_file, postgres, journal, tmp_path,
                                                  monkeypatch):
    nowhere = f"postgresql://fal:{PASSWORD}@127.0.0.1:{unused_port()}/books"
    credentials(tmp_path, monkeypatch, {"default": CANARY_KEY, "team": {"key": CANARY_KEY, "database_url": nowhere}})
    lyria(nodes, seed=1, fal_client=client(nodes, "team"))
    assert books("SELECT state FROM ledger") == [("settled",)]  # in FAL_AUDIO_DATABASE_URL's database


def test_an_unreachable_profile_database_is_said_before_anything_is_uploaded_or_paid(
        fal, nodes, comfy, journal, tmp_path, monkeypatch, captured_logs):
    port = unused_port()
    path = credentials(tmp_path, monkeypatch, {"default": {"key": CANARY_KEY, "database_url":
                                                           f"postgresql://fal:{PASSWORD}@127.0.0.1:{port}/books"}})
    node = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000}
    with pytest.raises(Exception) as caught:
        run_node(node, **defaults(node, audio=clip, tags="rock", original_tags="pop"))
    message = str(caught.value)
    assert (f"The fal Audio database at postgresql://fal:***@127.0.0.1:{port}/books (profile 'default' in {path}) "
            "cannot be reached") in message and "Nothing was sent to fal" in message
    assert PASSWORD not in message + captured_logs.text
    assert fal.submissions == [] and fal.uploads == []


@pytest.mark.parametrize("value", ["mysql://fal:" + PASSWORD + "@db/books", 42])
def test_a_database_url_that_is_not_postgresql_is_refused_without_showing_it(fal, nodes, comfy, journal, tmp_path,
                                                                            monkeypatch, value):
    credentials(tmp_path, monkeypatch, {"default": CANARY_KEY, "team": {"key": CANARY_KEY, "database_url": value}})
    with pytest.raises(Exception) as caught:
        lyria(nodes, fal_client=client(nodes, "team"))
    message = str(caught.value)
    assert "The 'database_url' of profile 'team' in" in message and "is not a PostgreSQL URL" in message
    assert PASSWORD not in message and "mysql" not in message and fal.submissions == []


def test_the_default_profiles_database_holds_the_books_of_nodes_without_a_fal_client(
        fal, nodes, comfy, short_file, team_url, journal, tmp_path, monkeypatch):
    credentials(tmp_path, monkeypatch, {"default": {"key": CANARY_KEY, "database_url": team_url}})
    lyria(nodes, seed=1)
    assert books("SELECT state FROM ledger", (), journal.Journal(url=team_url)) == [("settled",)]
    assert not (comfy.user_dir / "fal-audio" / "journal.sqlite3").exists()
    report, today = run_node(nodes["FalAudioSpend"], unique_id="9")["result"]
    assert "in 1 paid request" in report and today == pytest.approx(0.1)
