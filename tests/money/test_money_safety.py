"""Issue 12: nothing paid twice, nothing left billing, no key on disk, under adversarial faults.
One test per case, each asserting what the user sees, what fal received, and what is on disk."""

import asyncio
import base64
import logging
import threading
import time

import pytest
import torch

from books import books, journal_at, stored_text
from support import CANARY_KEY, FILES, LYRIA, RESULT, SUBMIT, defaults, lyria, pack_module, run_node

CANCEL = r"/cancel$"


def options(**values):
    return pack_module("jobs.options").CallOptions(**values)


@pytest.fixture
def short_file(fal):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=1.0, rate=48000, channels=2))


def files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


# --- case 10: a timeout message says what really happened -------------------------------------

def test_queue_timeout_with_a_failed_cancel_does_not_claim_it_was_cancelled(fal, nodes, short_file):
    fal.set_timing("fal-ai/lyria2", stuck_in_queue=True)
    fal.fault("PUT", CANCEL, status=500, body={"detail": "cancel service down"})
    with pytest.raises(TimeoutError) as caught:
        lyria(nodes, fal_client=options(queue_timeout=0.3))
    message = str(caught.value)
    assert "was not confirmed" in message and "may still run" in message
    assert "was cancelled" not in message and "It was cancelled" not in message
    assert [path for method, path in fal.requests if method == "PUT"] == [
        f"queue.fal.run/fal-ai/lyria2/requests/{fal.submissions[0].request_id}/cancel"]


def test_queue_timeout_with_a_confirmed_cancel_says_so(fal, nodes, short_file):
    fal.set_timing("fal-ai/lyria2", stuck_in_queue=True)
    with pytest.raises(TimeoutError) as caught:
        lyria(nodes, fal_client=options(queue_timeout=0.3))
    assert f"Request {fal.submissions[0].request_id} was cancelled on fal" in str(caught.value)


# --- case 8: fal's request id never becomes a path ---------------------------------------------

@pytest.mark.parametrize("odd_id", ["../../escaped", "a/../../../escaped", "", "x" * 300, "..\\..\\escaped"])
def test_an_odd_request_id_is_refused_and_nothing_is_written_outside_the_output_folder(
        fal, nodes, short_file, comfy, tmp_path, odd_id):
    fal.queue_request_ids(odd_id)
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "request id the pack does not accept" in str(caught.value)
    assert "may or may not be running" in str(caught.value)
    assert len(fal.submissions) == 1
    # Not followed: no status, result or cancel call was made with it.
    assert [path for _, path in fal.requests if "/requests/" in path] == []
    assert not [p for p in files_under(tmp_path) if "escaped" in str(p)]


def test_kept_file_names_are_plain_names_whatever_the_id(pack):
    file_name = pack_module("jobs.results").file_name
    for odd in ("../../x", "a/b", "..", "/etc/passwd", "c:\\x", "x\x00y"):
        name = file_name("fal-ai/lyria2", odd, "audio", "https://v3.fal.media/files/a/output.wav")
        assert "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
        assert name.endswith(".wav")


# --- case 7: the key never reaches the disk or the log, base64 forms included ---------------------

def key_forms():
    key_id, secret = CANARY_KEY.split(":")
    forms = {CANARY_KEY, key_id, secret}
    for text in (f"Authorization: Key {CANARY_KEY}", f"xAuthorization: Key {CANARY_KEY}",
                 f"xxAuthorization: Key {CANARY_KEY}"):
        encoded = base64.b64encode(text.encode()).decode()
        forms.add(encoded[len(encoded) // 3: len(encoded) // 3 + 24])  # a piece from the middle
    return forms


def test_an_echoed_key_in_an_error_body_never_reaches_journal_logs_or_errors(fal, nodes, short_file, comfy,
                                                                            caplog):
    caplog.set_level(logging.DEBUG)
    # fal fails the finished request's result with an error that echoes the Authorization header,
    # as is and base64-encoded: the journal stores that error (the request is failed on fal).
    fal.fault("GET", RESULT, status=400, echo_auth=True, times=-1)
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "<redacted>" in str(caught.value)
    on_disk = b"".join(p.read_bytes() for p in files_under(comfy.user_dir) + files_under(comfy.output_dir))
    on_disk += stored_text().encode()
    said = "\n".join([r.getMessage() for r in caplog.records] + [str(caught.value)] + comfy.texts())
    for form in key_forms():
        assert form.encode() not in on_disk, form
        assert form not in said, form
    ((detail,),) = books("SELECT detail FROM requests")
    assert "<redacted>" in detail and "Authorization" in detail


# --- case 1: Cancel never orphans a request fal accepted ------------------------------------------

def interrupt_when(comfy, condition, after=0.0):
    def press():
        deadline = time.monotonic() + 20
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(after)
        comfy.interrupt()

    threading.Thread(target=press, daemon=True).start()


def journal_rows(comfy):
    return books("SELECT state, request_id FROM requests ORDER BY request_id")


def test_cancel_while_a_takes_submit_is_in_flight_cancels_that_request_too(fal, nodes, short_file, comfy):
    fal.set_timing("fal-ai/lyria2", stuck_in_queue=True)
    # The second take's submit reaches fal (and is billed) but its answer is held back: Cancel
    # arrives while it is in flight.
    fal.fault("POST", SUBMIT, delay_answer=1.0, skip=1)
    interrupt_when(comfy, lambda: len(fal.submissions) == 2)
    started = time.monotonic()
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes, takes=2)
    assert time.monotonic() - started < 10
    accepted = sorted(s.request_id for s in fal.submissions)
    assert len(accepted) == 2 and sorted(fal.cancels) == accepted  # nothing left billing
    assert all(fal.job(rid).state == "CANCELLED" for rid in accepted)
    assert journal_rows(comfy) == [("failed", rid) for rid in accepted]


def test_cancel_during_a_clip_batch_submit_cancels_every_accepted_request(fal, nodes, comfy):
    node = nodes["FalAudioAceStepAudioToAudio"]
    fal.set_timing("fal-ai/ace-step/audio-to-audio", stuck_in_queue=True)
    fal.fault("POST", r"queue\.fal\.run/fal-ai/ace-step/audio-to-audio$", delay_answer=1.0, skip=2)
    clips = {"waveform": torch.rand(3, 1, 8000) - 0.5, "sample_rate": 8000}
    interrupt_when(comfy, lambda: len(fal.submissions) == 3)
    with pytest.raises(comfy.InterruptProcessingException):
        run_node(node, unique_id="2", **defaults(node, audio=clips, tags="rock", original_tags="pop"))
    accepted = sorted(s.request_id for s in fal.submissions)
    assert len(accepted) == 3 and sorted(fal.cancels) == accepted


# --- case 5: an uncertain submit is not resent by an identical node of the same prompt ------------

def test_an_uncertain_submit_is_not_resent_by_its_twin_in_the_same_prompt(fal, nodes, short_file):
    fal.fault("POST", SUBMIT, close=True)  # the connection breaks after the request went out
    node = nodes[LYRIA]
    inputs = defaults(node, prompt="twins")

    async def prompt():
        return await asyncio.gather(node().generate(**inputs), node().generate(**inputs), return_exceptions=True)

    results = asyncio.run(prompt())
    sent = [r for r in fal.requests if r == ("POST", "queue.fal.run/fal-ai/lyria2")]
    assert len(sent) == 1  # the twin did not send it again
    assert all(isinstance(r, Exception) and "may or may not be running" in str(r) for r in results)
    # A new prompt (re-run, as the message says) submits anew.
    (audio,) = run_node(node, **inputs)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


# --- case 2: a deleted kept file is paid again only when fal's copy is gone for good --------------

EXPIRED = "the kept file was deleted and fal's copy has expired: paying for a new take"


def kept_files(comfy):
    folder = comfy.output_dir / "fal-audio"
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".part")) if folder.exists() else []


def delete_kept_file(comfy):
    (kept,) = kept_files(comfy)
    kept.unlink()


@pytest.mark.parametrize("fault", [dict(status=503), dict(status=500, body={"detail": "storage hiccup"}),
                                   dict(close=True), dict(status=429)])
def test_a_deleted_kept_file_survives_one_hiccup_of_fals_copy(fal, nodes, short_file, comfy, fault):
    (first,) = lyria(nodes)
    delete_kept_file(comfy)
    fal.fault("GET", FILES, **fault)
    (again,) = lyria(nodes)
    assert len(fal.submissions) == 1 and torch.equal(first["waveform"], again["waveform"])
    assert EXPIRED not in "\n".join(comfy.texts()) and len(kept_files(comfy)) == 1


def test_a_lasting_file_host_failure_keeps_the_entry_for_the_next_run(fal, nodes, short_file, comfy, monkeypatch):
    monkeypatch.setattr(pack_module("transport.gateway"), "DOWNLOAD_BACKOFF", 0.01)  # same retries, shorter pauses
    lyria(nodes)
    delete_kept_file(comfy)
    fal.fault("GET", FILES, status=503, times=5)
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "no new charge" in str(caught.value) and len(fal.submissions) == 1
    lyria(nodes)
    assert len(fal.submissions) == 1


@pytest.mark.parametrize("gone", ["removed", 410])
def test_a_deleted_kept_file_whose_copy_expired_is_paid_again_and_says_so(fal, nodes, short_file, comfy, gone):
    lyria(nodes)
    delete_kept_file(comfy)
    if gone == "removed":
        fal.remove_file(fal.jobs[0].result["audio"]["url"])
    else:
        fal.fault("GET", FILES, status=410)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 2
    assert EXPIRED in comfy.texts()


def test_cancel_while_fetching_a_deleted_kept_file_leaves_the_entry(fal, nodes, short_file, comfy):
    lyria(nodes)
    delete_kept_file(comfy)
    fal.fault("GET", FILES, delay=3)
    interrupt_when(comfy, lambda: any("files/" in path for _, path in fal.requests[1:]), after=0.2)
    with pytest.raises(comfy.InterruptProcessingException):
        lyria(nodes)
    assert len(fal.submissions) == 1
    assert [state for state, _ in journal_rows(comfy)] == ["completed"]
    lyria(nodes)
    assert len(fal.submissions) == 1


# --- case 9 (results): file:// and empty results ----------------------------------------------------

def test_a_file_url_result_is_a_clear_error_not_retried(fal, nodes, comfy):
    fal.set_handler("fal-ai/lyria2", lambda payload: {"audio": {"url": "file:///etc/passwd"}})
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert time.monotonic() - started < 3  # no backoff retries
    assert "not a web address" in str(caught.value) and "file:///etc/passwd" in str(caught.value)
    assert kept_files(comfy) == [] and [state for state, _ in journal_rows(comfy)] == ["submitted"]
    with pytest.raises(Exception):
        lyria(nodes)
    assert len(fal.submissions) == 1  # paid once; the re-run does not pay again


def test_an_empty_result_file_is_not_marked_completed(fal, nodes, comfy):
    url = fal.add_file(b"", "output.wav", "audio/wav")
    fal.set_handler("fal-ai/lyria2", lambda payload: {"audio": {"url": url}})
    with pytest.raises(Exception) as caught:
        lyria(nodes)
    assert "empty (0 bytes)" in str(caught.value)
    assert kept_files(comfy) == [] and [state for state, _ in journal_rows(comfy)] == ["submitted"]


def test_one_5xx_on_a_fresh_download_is_retried(fal, nodes, short_file):
    fal.fault("GET", FILES, status=503)
    (audio,) = lyria(nodes)
    assert audio["waveform"].shape[-1] == 48000 and len(fal.submissions) == 1


def test_every_string_the_journal_stores_is_scrubbed_of_the_key(pack, tmp_path):
    secrets = pack_module("core.secrets")
    secrets.register(CANARY_KEY)
    book = journal_at(tmp_path / "journal.sqlite3")
    encoded = base64.b64encode(f"user:{CANARY_KEY}".encode()).decode()
    book.remember_upload("clip", f"https://v3.fal.media/files/x/a.wav?token={encoded}")
    assert book.claim("k", "fal-ai/x") is None
    book.submitted("k", "0f0e0d0c-0000-4000-8000-000000000000")
    book.completed("k", {"audio": {"url": "https://v3.fal.media/files/y.wav"}, "echo": f"Key {CANARY_KEY}"}, {})
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir()) + stored_text(book).encode()
    for form in key_forms() | {encoded[8:40]}:
        assert form.encode() not in on_disk, form
    assert book.get("k").response["echo"] == "<redacted>"
