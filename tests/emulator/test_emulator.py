"""Tests for the fal.ai emulator, driven through the real fal_client over HTTPS."""

from __future__ import annotations

import asyncio
import io
import pathlib
import time

import av
import fal_client
import httpx
import httpx_sse
import numpy as np
import pytest
from fal_client.client import Completed, FalClientHTTPError, InProgress, Queued

from fal_emulator import EmulatedError, FalEmulator

KEY = "test-key-123"
INPAINT = "fal-ai/ace-step/audio-inpaint"

pytestmark = pytest.mark.emulator  # runs fal emulators of its own


@pytest.fixture(scope="module")
def _emu_server(tmp_path_factory):
    # These tests exercise the transport with placeholder payloads (no input contracts:
    # those have their own tests in test_contracts.py).
    emulator = FalEmulator(KEY, tmp_path_factory.mktemp("fal_emulator"), strict_contracts=False)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emu(_emu_server, monkeypatch):
    # fal_client builds its httpx clients lazily, so the environment only has to be in
    # place before each test creates its own client.
    _emu_server.reset()
    for name, value in _emu_server.client_env().items():
        monkeypatch.setenv(name, value)
    yield _emu_server
    while _sync_clients:
        # Like AsyncClient, SyncClient has no public close(); its httpx client is a
        # cached_property stored in the instance __dict__.
        cached = _sync_clients.pop().__dict__.get("_client")
        if cached is not None:
            cached.close()
    _emu_server.reset()


_async_clients: list[fal_client.AsyncClient] = []
_sync_clients: list[fal_client.SyncClient] = []


def sync_client(**kwargs) -> fal_client.SyncClient:
    """A fresh SyncClient whose httpx client the `emu` fixture closes after the test."""
    client = fal_client.SyncClient(**kwargs)
    _sync_clients.append(client)
    return client


def async_client(**kwargs) -> fal_client.AsyncClient:
    """A fresh AsyncClient whose httpx client `run()` closes inside the same event loop."""
    client = fal_client.AsyncClient(**kwargs)
    _async_clients.append(client)
    return client


def run(coro):
    async def main():
        try:
            return await coro
        finally:
            while _async_clients:
                # fal_client has no public close(); its lazily built httpx client is
                # cached in the instance __dict__.
                cached = _async_clients.pop().__dict__.get("_client")
                if cached is not None:
                    await (await cached).aclose()

    return asyncio.run(main())


def auth_headers(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Key {key}"}


def test_client_env_points_at_local_proxy(emu):
    env = emu.client_env()
    assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{emu.port}"
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["SSL_CERT_FILE"] == emu.ca_path
    assert env["FAL_KEY"] == KEY
    assert pathlib.Path(emu.ca_path).read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_submit_status_result_async(emu):
    seen = []

    def handler(payload):
        seen.append(payload)
        return {"audio": {"url": "https://v3.fal.media/files/x/y.wav"}, "seed": payload["seed"]}

    emu.set_handler(INPAINT, handler)
    emu.set_timing(INPAINT, queue_seconds=0.4, run_seconds=0.4, queue_position=3, logs=["one", "two", "three"])

    async def scenario():
        client = async_client()
        handle = await client.submit(INPAINT, {"seed": 7, "prompt": "drums"})
        # The handler ran at submit time.
        assert seen == [{"seed": 7, "prompt": "drums"}]
        base = f"https://queue.fal.run/fal-ai/ace-step/requests/{handle.request_id}"
        assert (handle.response_url, handle.status_url, handle.cancel_url) == (base, base + "/status", base + "/cancel")

        statuses = []
        while True:
            status = await handle.status(with_logs=True)
            statuses.append(status)
            if isinstance(status, Completed):
                break
            await asyncio.sleep(0.03)
        return handle, statuses, await handle.get()

    handle, statuses, result = run(scenario())
    assert result == {"audio": {"url": "https://v3.fal.media/files/x/y.wav"}, "seed": 7}

    queued = [s.position for s in statuses if isinstance(s, Queued)]
    assert queued and queued[0] <= 3 and queued == sorted(queued, reverse=True)
    progress_logs = [[log["message"] for log in s.logs] for s in statuses if isinstance(s, InProgress)]
    assert progress_logs and progress_logs[0][0] == "one"
    assert all(len(a) <= len(b) for a, b in zip(progress_logs, progress_logs[1:]))
    final = statuses[-1]
    assert [log["message"] for log in final.logs] == ["one", "two", "three"]
    assert final.metrics == {"inference_time": 0.4} and final.error is None
    assert {"level", "source", "timestamp"} <= set(final.logs[0])

    (submission,) = emu.submissions
    assert submission.endpoint == INPAINT and submission.request_id == handle.request_id
    assert submission.headers["authorization"] == f"Key {KEY}"
    job = emu.job(handle.request_id)
    assert (job.endpoint, job.state, job.cancelled) == (INPAINT, "COMPLETED", False)
    assert emu.result_calls == [handle.request_id]
    assert handle.request_id in emu.status_calls


def test_sync_subscribe_default_result_is_stereo_wav(emu):
    emu.set_timing(run_seconds=0.1)
    updates = []
    result = sync_client().subscribe(
        "fal-ai/lyria2", {"prompt": "x"}, with_logs=True, on_queue_update=updates.append, interval=0.02
    )
    assert isinstance(updates[-1], Completed)
    audio = result["audio"]
    assert (audio["content_type"], audio["file_name"]) == ("audio/wav", "output.wav")
    response = httpx.get(audio["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert len(response.content) == audio["file_size"]
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (44100, 2)
    assert emu.downloads == [audio["url"]]


def test_namespaced_and_unknown_requests(emu):
    async def scenario():
        client = async_client()
        handle = await client.submit("fal-ai/ace-step/audio-inpaint/extra", {})
        assert "/fal-ai/ace-step/requests/" in handle.response_url
        # Looking the request up under another app is a 404, like an unknown id.
        with pytest.raises(FalClientHTTPError) as wrong_app:
            await client.status("fal-ai/other", handle.request_id)
        with pytest.raises(FalClientHTTPError) as unknown:
            await client.status("fal-ai/ace-step", "nope")
        # fal_client.get_handle() builds URLs the same way (sub-path dropped).
        assert isinstance(await client.status(INPAINT, handle.request_id), Completed)
        return wrong_app.value, unknown.value

    wrong_app, unknown = run(scenario())
    assert wrong_app.status_code == unknown.status_code == 404
    assert unknown.message == "Request not found"


def test_result_before_completion_and_invalid_json(emu):
    emu.set_timing(run_seconds=5)
    client = sync_client()
    handle = client.submit("fal-ai/lyria2", {})
    response = httpx.get(handle.response_url, headers=auth_headers())
    assert response.status_code == 400 and response.json() == {"detail": "Request is still in progress"}
    assert emu.job(handle.request_id).state == "IN_PROGRESS"

    bad = httpx.post("https://queue.fal.run/fal-ai/lyria2", content=b"{nope", headers=auth_headers())
    assert bad.status_code == 422
    assert len(emu.submissions) == 1


def test_cancel(emu):
    emu.set_timing(stuck_in_queue=True)

    async def scenario():
        client = async_client()
        handle = await client.submit("fal-ai/lyria2", {"prompt": "x"})
        assert await handle.status() == Queued(position=3)
        await handle.cancel()
        assert emu.job(handle.request_id).state == "CANCELLED"
        status = await handle.status(with_logs=True)
        with pytest.raises(FalClientHTTPError) as result_error:
            await handle.get()
        with pytest.raises(FalClientHTTPError) as second_cancel:
            await handle.cancel()
        return handle, status, result_error.value, second_cancel.value

    handle, status, result_error, second_cancel = run(scenario())
    assert status == Completed(logs=[], metrics={}, error="Request cancelled", error_type="request_cancelled")
    assert (result_error.status_code, result_error.message) == (400, "Request was cancelled")
    assert second_cancel.status_code == 400
    assert second_cancel.response.json() == {"status": "ALREADY_COMPLETED"}
    assert emu.cancels == [handle.request_id, handle.request_id]
    assert emu.job(handle.request_id).cancelled


def test_cancel_after_completion_is_rejected(emu):
    client = sync_client()
    handle = client.submit("fal-ai/lyria2", {})
    response = httpx.put(handle.cancel_url, headers=auth_headers())
    assert response.status_code == 400 and response.json() == {"status": "ALREADY_COMPLETED"}
    assert emu.cancels == [handle.request_id]
    assert emu.job(handle.request_id).state == "COMPLETED"


def test_upload_round_trip_and_range(emu):
    data = bytes(range(256)) * 40

    async def scenario():
        return await async_client().upload(data, "audio/wav", "input.wav")

    url = run(scenario())
    assert url.startswith("https://v3.fal.media/files/") and url.endswith("/input.wav")
    downloaded = httpx.get(url)
    assert downloaded.content == data and downloaded.headers["content-type"] == "audio/wav"
    (upload,) = emu.uploads
    assert (upload.data, upload.content_type, upload.file_name, upload.url) == (data, "audio/wav", "input.wav", url)

    partial = httpx.get(url, headers={"Range": "bytes=1000-"})
    assert partial.status_code == 206
    assert partial.content == data[1000:]
    assert partial.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    # The same object is also reachable on the legacy CDN host.
    assert httpx.get(url.replace("v3.fal.media", "fal.media")).content == data
    assert httpx.get("https://v3.fal.media/files/missing/x.wav").status_code == 404


def test_upload_falls_back_to_storage_initiate(emu):
    # A non-retryable error on the v3 CDN makes fal_client fall back to the
    # initiate + signed PUT flow on rest.fal.ai.
    emu.fault("POST", r"^v3\.fal\.media/files/upload$", status=500)
    data = b"fallback bytes"
    url = sync_client().upload(data, "application/octet-stream")
    assert httpx.get(url).content == data
    (upload,) = emu.uploads
    assert upload.url == url and upload.data == data
    methods = [(m, p.split("/")[0]) for m, p in emu.requests]
    assert ("PUT", "v3.fal.media") in methods
    assert ("POST", "rest.fal.ai") in methods


def test_wrong_key_is_rejected_with_401(emu):
    async def scenario(key):
        return await async_client(key=key).submit("fal-ai/lyria2", {})

    with pytest.raises(FalClientHTTPError) as error:
        run(scenario("wrong"))
    assert (error.value.status_code, error.value.message) == (401, "Invalid API key")
    assert "wrong" not in error.value.response.text
    assert emu.submissions == []

    emu.set_key("rotated")
    with pytest.raises(FalClientHTTPError):
        run(scenario(KEY))
    run(scenario("rotated"))
    assert len(emu.submissions) == 1


def test_429_on_submit_is_retried(emu):
    emu.fault("POST", r"^queue\.fal\.run/fal-ai/lyria2$", status=429, body={"detail": "Rate limited"}, times=2)

    async def scenario():
        return await async_client().subscribe("fal-ai/lyria2", {"prompt": "x"}, interval=0.02)

    result = run(scenario())
    assert "audio" in result
    assert len(emu.submissions) == 1
    assert emu.requests.count(("POST", "queue.fal.run/fal-ai/lyria2")) == 3


def test_nginx_502_is_retried_but_json_502_is_not(emu):
    emu.fault("POST", r"lyria2$", status=502)
    sync_client().submit("fal-ai/lyria2", {})
    assert len(emu.submissions) == 1

    emu.fault("POST", r"lyria2$", status=502, body={"detail": "bad gateway from app"})
    with pytest.raises(FalClientHTTPError) as error:
        sync_client().submit("fal-ai/lyria2", {})
    assert error.value.status_code == 502
    assert len(emu.submissions) == 1


def test_dropped_connection_on_status_is_retried(emu):
    emu.fault("GET", r"/status$", close=True)
    client = sync_client()
    handle = client.submit("fal-ai/lyria2", {})
    assert isinstance(handle.status(), Completed)
    assert emu.status_calls == [handle.request_id, handle.request_id]


def test_422_detail_list_is_the_error_message(emu):
    detail = [{"loc": ["body", "duration"], "msg": "Input should be less than 240", "type": "less_than"}]
    emu.fault("POST", r"^queue\.fal\.run/", status=422, body={"detail": detail})

    async def scenario():
        return await async_client().submit("fal-ai/lyria2", {"duration": 999})

    with pytest.raises(FalClientHTTPError) as error:
        run(scenario())
    assert error.value.status_code == 422
    assert error.value.message == detail
    assert emu.submissions == []


def test_job_failure_via_emulated_error(emu):
    def handler(payload):
        raise EmulatedError(500, {"detail": "CUDA out of memory", "error_type": "runner_error"})

    emu.set_handler("fal-ai/lyria2", handler)

    async def scenario():
        handle = await async_client().submit("fal-ai/lyria2", {})
        status = await handle.status()
        with pytest.raises(FalClientHTTPError) as error:
            await handle.get()
        return status, error.value

    status, error = run(scenario())
    assert isinstance(status, Completed)
    assert (status.error, status.error_type) == ("CUDA out of memory", "runner_error")
    assert (error.status_code, error.message) == (500, "CUDA out of memory")
    assert len(emu.submissions) == 1


def test_stuck_in_queue(emu):
    emu.set_timing("fal-ai/lyria2", stuck_in_queue=True, queue_position=5)

    async def scenario():
        handle = await async_client().submit("fal-ai/lyria2", {})
        positions = []
        for _ in range(4):
            positions.append(await handle.status())
            await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(handle.get(interval=0.02), timeout=0.3)
        return handle, positions

    handle, positions = run(scenario())
    assert positions == [Queued(position=5)] * 4
    assert emu.job(handle.request_id).state == "IN_QUEUE"
    # Timing for one endpoint leaves the default untouched.
    other = sync_client().submit("fal-ai/other-app", {})
    assert emu.job(other.request_id).state == "COMPLETED"


def test_truncated_download(emu):
    url = emu.audio_file()
    full = httpx.get(url).content
    emu.fault("GET", r"^v3\.fal\.media/files/", truncate=True)
    try:
        received = httpx.get(url).content
    except httpx.HTTPError:
        received = None
    assert received is None or len(received) < len(full)
    assert httpx.get(url).content == full
    assert emu.downloads == [url, url, url]


@pytest.mark.parametrize(
    "fmt,channels,rate",
    [("wav", 1, 22050), ("wav", 2, 44100), ("mp3", 1, 24000), ("mp3", 2, 44100), ("flac", 1, 16000), ("flac", 2, 48000)],
)
def test_audio_file_decodes(emu, fmt, channels, rate):
    url = emu.audio_file(seconds=0.5, rate=rate, channels=channels, fmt=fmt, freq=500.0)
    assert url.endswith(f"/output.{fmt}")
    response = httpx.get(url)
    assert response.headers["content-type"] == {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}[fmt]
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.sample_rate, stream.codec_context.channels) == (rate, channels)
        # Normalise every decoded frame to planar float: shape (channels, samples).
        resampler = av.AudioResampler(format="fltp")
        samples = np.concatenate(
            [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)], axis=1
        )
    assert abs(samples.shape[1] - rate // 2) <= rate // 50
    assert 0.4 < np.abs(samples).max() <= 0.55
    for channel in range(channels):
        spectrum = np.abs(np.fft.rfft(samples[channel]))
        peak_hz = np.argmax(spectrum) * rate / samples.shape[1]
        assert abs(peak_hz - 500.0 * (channel + 1)) < 10


def test_file_result_shape(emu):
    result = emu.file_result("audio_file", fmt="flac", seconds=0.1)
    entry = result["audio_file"]
    assert entry["content_type"] == "audio/flac" and entry["file_name"] == "output.flac"
    assert len(httpx.get(entry["url"]).content) == entry["file_size"]


def test_sse_status_stream(emu):
    emu.set_timing(stuck_in_queue=True, queue_position=2)
    handle = sync_client().submit("fal-ai/lyria2", {})
    job = emu.job(handle.request_id)
    events = []
    with httpx.Client(headers=auth_headers()) as client:
        with httpx_sse.connect_sse(client, "GET", handle.status_url + "/stream", params={"logs": 1}) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            for event in source.iter_sse():
                events.append(event.json())
                if len(events) == 1:
                    # Release the job only once the stream is open, so no phase can be
                    # missed however slow the machine is: queue 0.1 s more, then run 0.2 s.
                    job.timing.queue_seconds = job.elapsed() + 0.1
                    job.timing.run_seconds = 0.2
                    job.timing.stuck_in_queue = False
    statuses = [event["status"] for event in events]
    assert events[0]["status"] == "IN_QUEUE" and events[0]["queue_position"] == 2
    assert statuses[-1] == "COMPLETED" and statuses.count("COMPLETED") == 1
    assert "IN_PROGRESS" in statuses
    assert statuses == sorted(statuses, key=["IN_QUEUE", "IN_PROGRESS", "COMPLETED"].index)
    assert [log["message"] for log in events[-1]["logs"]] == ["Loading model", "Generating", "Encoding"]
    assert emu.status_calls == [handle.request_id]


def test_concurrent_jobs(emu):
    emu.set_timing(queue_seconds=0.1, run_seconds=0.1)
    emu.set_handler("fal-ai/lyria2", lambda payload: {"index": payload["index"]})

    async def scenario():
        client = async_client()
        return await asyncio.gather(*[
            client.subscribe("fal-ai/lyria2", {"index": i}, interval=0.02) for i in range(12)
        ])

    started = time.monotonic()
    results = run(scenario())
    assert [r["index"] for r in results] == list(range(12))
    assert len({s.request_id for s in emu.submissions}) == 12
    assert time.monotonic() - started < 5


def test_fault_matching_and_delay(emu):
    # Method filter: a GET fault does not affect a POST to the same path.
    emu.fault("GET", r"lyria2", status=500, times=5)
    sync_client().submit("fal-ai/lyria2", {})
    # A pure delay fault slows the response down but otherwise answers normally.
    emu.reset()
    emu.fault("*", r"lyria2$", delay=0.2)
    started = time.monotonic()
    sync_client().submit("fal-ai/lyria2", {})
    assert time.monotonic() - started >= 0.2
    assert len(emu.submissions) == 1


def test_only_fal_hosts_are_tunnelled(emu):
    with pytest.raises(httpx.ProxyError):
        httpx.get("https://example.com/")
    assert emu.requests == []


def test_reset_forgets_state(emu):
    handle = sync_client().submit("fal-ai/lyria2", {})
    url = emu.add_file(b"abc", "a.bin", "application/octet-stream")
    emu.reset()
    assert (emu.submissions, emu.requests) == ([], [])
    with pytest.raises(KeyError):
        emu.job(handle.request_id)
    assert httpx.get(url).status_code == 404


def test_synchronous_run_on_fal_run(emu):
    emu.set_handler("fal-ai/lyria2", lambda payload: {"echo": payload})
    assert sync_client().run("fal-ai/lyria2", {"prompt": "x"}) == {"echo": {"prompt": "x"}}
    assert [s.endpoint for s in emu.submissions] == ["fal-ai/lyria2"]


def test_delay_answer_of_a_chosen_submit(emu):
    emu.fault("POST", r"lyria2$", delay_answer=0.6, skip=1)
    client = sync_client()
    started = time.monotonic()
    client.submit("fal-ai/lyria2", {})
    assert time.monotonic() - started < 0.5  # the first submit passes untouched
    seen = []
    threading_timer = __import__("threading").Timer(0.3, lambda: seen.append(len(emu.submissions)))
    threading_timer.start()
    started = time.monotonic()
    client.submit("fal-ai/lyria2", {})
    threading_timer.join()
    assert time.monotonic() - started >= 0.6
    assert seen == [2]  # the job existed while its answer was held back


def test_removed_file_and_odd_request_ids_and_echoed_auth(emu):
    url = emu.add_file(b"abc", "a.bin", "application/octet-stream")
    emu.remove_file(url)
    assert httpx.get(url).status_code == 404
    emu.queue_request_ids("../../x")
    assert sync_client().submit("fal-ai/lyria2", {}).request_id == "../../x"
    emu.fault("POST", r"lyria2$", status=400, echo_auth=True)
    response = httpx.post("https://queue.fal.run/fal-ai/lyria2", json={}, headers=auth_headers())
    import base64

    assert response.status_code == 400 and f"Key {KEY}" in response.json()["detail"]
    echoed = base64.b64decode(response.json()["detail"].rsplit(" ", 1)[1].rstrip(")")).decode()
    assert echoed == f"Authorization: Key {KEY}"


def test_status_stream_wakes_when_the_job_is_due_to_change(monkeypatch):
    """The emulator's event stream sleeps until the next moment the status changes (as fal pushes
    an event the moment it happens), not a fixed tick that would make every completion late."""
    import fal_emulator

    job = fal_emulator.Job("abcdef12-3456", "fal-ai/x", "fal-ai/x", {}, {},
                           fal_emulator.Timing(queue_seconds=0.5, run_seconds=1.0, logs=["a", "b"]))
    now = [job.submitted_at]
    monkeypatch.setattr(fal_emulator.time, "monotonic", lambda: now[0])
    assert job.next_change() == pytest.approx(0.5005)  # the run starts
    now[0] += 0.6
    assert job.next_change() == pytest.approx(0.4005)  # the second log line at 0.5 + 1.0 / 2
    now[0] += 0.5
    assert job.next_change() == pytest.approx(0.4005)  # completion at 1.5
    now[0] += 0.5
    assert job.next_change() == float("inf")  # completed: nothing more is due
    job.cancelled = True
    assert job.next_change() == float("inf")
