"""Issue 12: nothing paid twice, nothing left billing, no key on disk, under adversarial faults.
One test per case, each asserting what the user sees, what fal received, and what is on disk."""

import base64
import logging

import pytest

from support import CANARY_KEY, defaults, pack_module, run_node

LYRIA = "FalAudioLyria2"
SUBMIT = r"queue\.fal\.run/fal-ai/lyria2$"
RESULT = r"queue\.fal\.run/fal-ai/lyria2/requests/[^/]+$"
CANCEL = r"/cancel$"
FILES = r"v3\.fal\.media/files/"


def lyria(nodes, **inputs):
    return run_node(nodes[LYRIA], unique_id="1", **defaults(nodes[LYRIA], prompt="money safety", **inputs))


def options(**values):
    return pack_module("utils.options").CallOptions(**values)


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
    file_name = pack_module("utils.results").file_name
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
    said = "\n".join([r.getMessage() for r in caplog.records] + [str(caught.value)] + comfy.texts())
    for form in key_forms():
        assert form.encode() not in on_disk, form
        assert form not in said, form
    journal_file = comfy.user_dir / "fal-audio" / "journal.sqlite3"
    import sqlite3

    (detail,) = sqlite3.connect(journal_file).execute("SELECT detail FROM requests").fetchone()
    assert "<redacted>" in detail and "Authorization" in detail
