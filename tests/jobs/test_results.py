"""A node declares which files of fal's response it keeps (result_files); the job runner
downloads, keeps, journals, reuses and resumes every one of them, and the node builds its
sockets from JobResult.response / .audio / .audios. Checked with nodes that keep several
files and none, against the emulator, by what comes out and how many requests fal got."""

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from support import defaults, pack_module, run_node

LYRIA = "FalAudioLyria2"
ENDPOINT = "fal-ai/lyria2"


def peak_hz(audio, item=0, channel=0):
    wave = audio["waveform"][item, channel]
    return round(int(torch.fft.rfft(wave).abs().argmax()) * audio["sample_rate"] / wave.shape[-1])


def node_classes(nodes):
    """Lyria 2 nodes (a real endpoint with a strict contract) that keep other things than one file."""
    base = nodes[LYRIA]

    class TwoFiles(base):
        RETURN_TYPES = ("AUDIO", "AUDIO", "STRING")
        RETURN_NAMES = ("vocals", "drums", "files")

        def result_files(self, response):
            return {name: response[name]["url"] for name in ("vocals", "drums") if response.get(name)}

        def outputs(self, results):
            first = results[0]
            return (first.audios["vocals"], first.audios.get("drums"),
                    json.dumps({name: path.name for name, path in first.files.items()}))

    class TextOnly(base):
        RETURN_TYPES = ("STRING",)
        RETURN_NAMES = ("text",)

        def result_files(self, response):
            return {}

        def outputs(self, results):
            assert results[0].audio is None and results[0].audios == {} and results[0].file_path is None
            return (results[0].response["text"],)

    return TwoFiles, TextOnly


def run(cls, **inputs):
    return run_node(cls, unique_id="7", **defaults(cls, prompt="two files", **inputs))


def two_files(fal, drums_fmt="mp3"):
    def handler(payload):
        vocals = fal.file_result(key="vocals", seconds=0.5, rate=16000, channels=2, freq=300.0)
        drums = fal.file_result(key="drums", seconds=0.5, rate=16000, channels=1, fmt=drums_fmt, freq=1000.0)
        return {**vocals, **drums, "text": "ignored"}

    fal.set_handler(ENDPOINT, handler)


def entry_of(fal):
    journal = pack_module("money.journal").current()
    rows = journal._connect().execute("SELECT identity FROM requests").fetchall()
    assert len(rows) == 1
    return journal.get(rows[0][0])


def test_every_file_is_kept_decoded_and_journaled(fal, nodes, comfy):
    TwoFiles, _ = node_classes(nodes)
    two_files(fal)
    vocals, drums, names = run(TwoFiles)
    assert peak_hz(vocals) == 300 and vocals["waveform"].shape == (1, 2, 8000)
    assert peak_hz(drums) == 1000 and drums["waveform"].shape[:2] == (1, 1)
    request_id = fal.submissions[0].request_id
    kept = json.loads(names)
    assert kept == {"vocals": f"fal-ai_lyria2_{request_id}_vocals.wav",
                    "drums": f"fal-ai_lyria2_{request_id}_drums.mp3"}
    folder = comfy.output_dir / "fal-audio"
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept.values())
    entry = entry_of(fal)
    assert entry.state == "completed"
    assert {name: Path(p).name for name, p in entry.files.items()} == kept
    assert len(fal.downloads) == 2


def test_reuse_restores_every_file_without_paying(fal, nodes, comfy):
    TwoFiles, _ = node_classes(nodes)
    two_files(fal)
    first = run(TwoFiles)
    again = run(TwoFiles)
    assert len(fal.submissions) == 1 and len(fal.downloads) == 2
    assert torch.equal(first[0]["waveform"], again[0]["waveform"])
    assert torch.equal(first[1]["waveform"], again[1]["waveform"])
    assert "Reused the kept result (no new charge)" in comfy.texts()


def test_a_deleted_kept_file_is_fetched_again_alone(fal, nodes, comfy):
    TwoFiles, _ = node_classes(nodes)
    two_files(fal)
    run(TwoFiles)
    drums_path = next((comfy.output_dir / "fal-audio").glob("*_drums.mp3"))
    drums_path.unlink()
    vocals, drums, _ = run(TwoFiles)
    assert len(fal.submissions) == 1
    assert len(fal.downloads) == 3 and fal.downloads[-1].endswith(".mp3")
    assert drums_path.is_file() and peak_hz(drums) == 1000 and peak_hz(vocals) == 300


def test_a_failed_download_of_the_second_file_resumes_without_paying(fal, nodes, comfy):
    TwoFiles, _ = node_classes(nodes)
    two_files(fal)
    fal.fault("GET", r"v3\.fal\.media/files/.*\.mp3$", status=404)
    with pytest.raises(Exception) as caught:
        run(TwoFiles)
    assert "could not be downloaded" in str(caught.value) and "no new charge" in str(caught.value)
    assert entry_of(fal).state == "submitted"
    vocals, drums, _ = run(TwoFiles)
    assert len(fal.submissions) == 1  # the paid request was resumed, not sent again
    assert peak_hz(vocals) == 300 and peak_hz(drums) == 1000
    assert set(entry_of(fal).files) == {"vocals", "drums"} and entry_of(fal).state == "completed"


def test_a_file_that_does_not_decode_is_named_and_kept(fal, nodes, comfy):
    TwoFiles, _ = node_classes(nodes)
    fal.set_handler(ENDPOINT, lambda payload: {
        **fal.file_result(key="vocals", seconds=0.5, rate=16000),
        "drums": {"url": fal.add_file(b"not audio at all" * 64, "drums.wav"), "content_type": "audio/wav"}})
    with pytest.raises(Exception) as caught:
        run(TwoFiles)
    message = str(caught.value)
    assert "'drums' file could not be decoded" in message
    kept = next((comfy.output_dir / "fal-audio").glob("*_drums.wav"))
    assert str(kept) in message
    assert len(fal.submissions) == 1


def test_a_file_the_node_does_not_ask_for_is_not_downloaded(fal, nodes):
    TwoFiles, _ = node_classes(nodes)
    fal.set_handler(ENDPOINT, lambda payload: fal.file_result(key="vocals", seconds=0.5, rate=16000))
    vocals, drums, names = run(TwoFiles)
    assert drums is None and set(json.loads(names)) == {"vocals"} and len(fal.downloads) == 1


def test_text_only_result_downloads_nothing_and_is_reused(fal, nodes, comfy):
    _, TextOnly = node_classes(nodes)
    fal.set_handler(ENDPOINT, lambda payload: {"text": "hello from the model"})
    assert run(TextOnly) == ("hello from the model",)
    assert run(TextOnly) == ("hello from the model",)
    assert len(fal.submissions) == 1 and fal.downloads == []
    entry = entry_of(fal)
    assert entry.state == "completed" and entry.files == {} and entry.file_path is None
    assert not (comfy.output_dir / "fal-audio").exists() or not any((comfy.output_dir / "fal-audio").iterdir())


def test_default_node_still_names_a_missing_file_field(fal, nodes):
    fal.set_handler(ENDPOINT, lambda payload: {"text": "no file"})
    with pytest.raises(Exception) as caught:
        run(nodes[LYRIA])
    assert "has no 'audio' file" in str(caught.value) and "['text']" in str(caught.value)


def test_a_journal_from_before_several_files_is_still_reused(fal, nodes, comfy):
    """A journal written by the one-file runner (no `files` column) keeps working: its kept file is reused."""
    fal.set_handler(ENDPOINT, lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2, freq=500.0))
    (first,) = run(nodes[LYRIA])
    book = pack_module("money.journal").current()
    path = book.path
    row = book._connect().execute(
        "SELECT identity, endpoint, state, request_id, owner, response, file_path, detail, created, updated"
        " FROM requests").fetchone()
    book._connect().close()
    pack_module("money.journal").forget_open()  # as after a restart: the next run opens the file anew
    path.unlink()
    for extra in ("-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE requests (
            identity TEXT PRIMARY KEY, endpoint TEXT NOT NULL, state TEXT NOT NULL,
            request_id TEXT, owner TEXT, response TEXT, file_path TEXT,
            detail TEXT, created REAL NOT NULL, updated REAL NOT NULL);
        CREATE TABLE uploads (content_hash TEXT PRIMARY KEY, url TEXT NOT NULL, uploaded REAL NOT NULL);""")
    old.execute("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?)", row)
    old.commit()
    old.close()
    (again,) = run(nodes[LYRIA])
    assert len(fal.submissions) == 1 and len(fal.downloads) == 1
    assert torch.equal(first["waveform"], again["waveform"])
