"""fal Result by Request ID: a finished request's result again, with no submit and $0 in the ledger; ids and
endpoints of the wrong shape refused before any call."""

import json

import pytest
import torch

from fal_emulator import encode_sine
from support import lyria, pack_module, run_node

NODE = "FalAudioResultByRequestID"


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def by_id(nodes, endpoint, request_id, **inputs):
    return run_node(nodes[NODE], endpoint_id=endpoint, request_id=request_id, unique_id="5", **inputs)


def ledger(comfy):
    import sqlite3

    with sqlite3.connect(comfy.user_dir / "fal-audio" / "journal.sqlite3") as db:
        return db.execute("SELECT endpoint, state, request_id, cost_usd, detail FROM ledger ORDER BY id").fetchall()


def test_a_kept_result_comes_back_without_any_call_to_fal(fal, nodes, comfy, short_file):
    (original,) = lyria(nodes)
    request_id = fal.submissions[0].request_id
    calls = len(fal.requests)
    audio, text, response, files = by_id(nodes, "fal-ai/lyria2", request_id)
    assert torch.equal(audio["waveform"], original["waveform"]) and audio["sample_rate"] == 48000
    assert len(fal.requests) == calls and len(fal.submissions) == 1
    assert text == "" and json.loads(response)["audio"]["url"].startswith("https://") and files == "0: audio"
    assert ledger(comfy)[-1] == ("fal-ai/lyria2", "reused", request_id, 0, "kept result reused")
    assert comfy.texts()[-1] == f"Result of request {request_id[:8]} · $0 (no new request)"


def test_fals_stored_result_is_fetched_kept_and_booked_at_zero(fal, nodes, comfy, short_file, monkeypatch,
                                                               tmp_path):
    (original,) = lyria(nodes)
    request_id = fal.submissions[0].request_id
    spent = run_node(nodes["FalAudioSpend"], unique_id="9")["result"][1]
    # Another machine's run (same key): this ComfyUI's journal does not know the request.
    monkeypatch.setenv("FAL_AUDIO_DATA_DIR", str(tmp_path / "other-data"))
    monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(tmp_path / "other-output"))
    pack_module("money.journal").forget_open()
    fetches = fal.result_calls.count(request_id)
    audio, _, _, _ = by_id(nodes, "fal-ai/lyria2", request_id)
    assert torch.equal(audio["waveform"], original["waveform"])
    assert len(fal.submissions) == 1 and fal.result_calls.count(request_id) == fetches + 1
    kept = list((tmp_path / "other-output").glob(f"*{request_id}*"))
    assert len(kept) == 1 and kept[0].read_bytes()[:4] == b"RIFF"
    book = pack_module("money.journal").current()
    assert book.spent_today() == 0
    assert book.results(1, request_id)[0]["files"] == {"audio": str(kept[0])}
    by_id(nodes, "fal-ai/lyria2", request_id)  # now kept here: no second fetch
    assert fal.result_calls.count(request_id) == fetches + 1 and len(fal.submissions) == 1
    assert book._connect().execute("SELECT detail, state, cost_usd FROM ledger").fetchall() == [
        ("result fetched by request id", "reused", 0), ("kept result reused", "reused", 0)]
    assert spent == pytest.approx(0.1)


def test_a_text_result_gives_its_text(fal, nodes, comfy):
    fal.set_handler("fal-ai/wizper", lambda payload: {"text": "hello there", "chunks": []})
    import httpx

    from support import CANARY_KEY

    with httpx.Client(verify=False, headers={"Authorization": f"Key {CANARY_KEY}"}) as client:  # a run made elsewhere
        request_id = client.post("https://queue.fal.run/fal-ai/wizper",
                                 json={"audio_url": "https://v3.fal.media/files/x.wav"}).json()["request_id"]
    audio, text, _, files = by_id(nodes, "fal-ai/wizper", request_id)
    assert text == "hello there" and audio["waveform"].shape[-1] == 0 and files == ""


def made_elsewhere(fal, endpoint: str, payload: dict) -> str:
    """A request made with the same key on another machine: this ComfyUI's journal does not know it."""
    import httpx

    from support import CANARY_KEY

    with httpx.Client(verify=False, headers={"Authorization": f"Key {CANARY_KEY}"}) as client:
        return client.post(f"https://queue.fal.run/{endpoint}", json=payload).json()["request_id"]


def test_every_audio_file_of_a_result_comes_back_as_one_batch_named_in_order(fal, nodes, comfy):
    """Stems made elsewhere: each is fetched and kept, in the result's order; 'files' says which is which."""
    song = fal.add_file(encode_sine(2.0, 8000, 2, "wav"), "song.wav", "audio/wav")
    request_id = made_elsewhere(fal, "fal-ai/demucs", {"audio_url": song, "model": "htdemucs"})
    audio, _, response, files = by_id(nodes, "fal-ai/demucs", request_id)
    stems = [name for name in json.loads(response) if isinstance(json.loads(response)[name], dict)]
    assert files.splitlines() == [f"{index}: {name}" for index, name in enumerate(stems)] and len(stems) == 4
    assert audio["waveform"].shape[0] == 4 and audio["waveform"].abs().amax(dim=(1, 2)).min() > 0
    kept = sorted(p.name for p in (comfy.output_dir / "fal-audio").glob(f"*{request_id}*"))
    assert len(kept) == 4 and all(name.endswith(".wav") or name.endswith(".mp3") for name in kept)
    assert comfy.texts()[-1].endswith("· 4 audio files as one batch")
    # Kept now: the same four come back from the journal, with no second fetch.
    fetches = fal.result_calls.count(request_id)
    again, _, _, files_again = by_id(nodes, "fal-ai/demucs", request_id)
    assert torch.equal(again["waveform"], audio["waveform"]) and files_again == files
    assert fal.result_calls.count(request_id) == fetches


def test_a_result_naming_hundreds_of_files_keeps_at_most_sixteen(fal, nodes, comfy):
    result = fal.file_result(seconds=0.1, rate=8000, channels=1)
    fal.set_handler("fal-ai/stable-audio-25/text-to-audio", lambda payload: {"files": [result["audio"]] * 300})
    request_id = made_elsewhere(fal, "fal-ai/stable-audio-25/text-to-audio", {"prompt": "x"})
    audio, _, _, files = by_id(nodes, "fal-ai/stable-audio-25/text-to-audio", request_id)
    assert audio["waveform"].shape[0] == 16 and len(files.splitlines()) == 16


@pytest.mark.parametrize("endpoint, request_id, field", [
    ("https://queue.fal.run/fal-ai/lyria2", "0123abcd-0000", "endpoint_id"),
    ("fal-ai/../admin", "0123abcd-0000", "endpoint_id"),
    ("fal-ai/lyria2?x=1", "0123abcd-0000", "endpoint_id"),
    ("", "0123abcd-0000", "endpoint_id"),
    ("fal-ai/lyria2", "", "request_id"),
    ("fal-ai/lyria2", "../../etc/passwd", "request_id"),
    ("fal-ai/lyria2", "abc", "request_id"),
    ("fal-ai/lyria2", "0123abcd 0000", "request_id"),
    ("fal-ai/lyria2", "a" * 200, "request_id"),
])
def test_wrong_shapes_are_refused_before_any_call(fal, nodes, endpoint, request_id, field):
    with pytest.raises(ValueError) as caught:
        by_id(nodes, endpoint, request_id)
    assert f"'{field}'" in str(caught.value) and "Nothing was sent to fal" in str(caught.value)
    assert fal.requests == []


def test_an_unknown_request_says_so_and_charges_nothing(fal, nodes, comfy):
    with pytest.raises(Exception) as caught:
        by_id(nodes, "fal-ai/lyria2", "0123abcd-0000-unknown")
    assert "fal has no result of request 0123abcd-0000-unknown for fal-ai/lyria2" in str(caught.value)
    assert fal.submissions == [] and ledger(comfy) == []
