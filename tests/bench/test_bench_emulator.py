"""bench/remote_emulator.py: the fal emulator the benchmark runs in a process of its own (as fal is
another machine), steered from the bench's process. The pack runs here against it, unchanged."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

import support

BENCH = support.PACK_DIR / "bench"

pytestmark = pytest.mark.emulator  # runs fal emulators of its own


@pytest.fixture(scope="module")
def remote_emulator():
    return support.script_module("bench/remote_emulator.py")


def _gone(pid: int) -> bool:
    """No process `pid` running (a zombie that its new parent has yet to reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_the_pack_runs_against_the_emulator_in_another_process(remote_emulator, nodes, comfy, tmp_path, monkeypatch):
    emulator = remote_emulator.RemoteEmulator(key=support.CANARY_KEY, workdir=tmp_path / "emulator")
    emulator.start()
    pid = emulator.pid
    try:
        assert pid is not None and not _gone(pid)
        for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AUDIO_CREDENTIALS", "FAL_AUDIO_ALLOW_PRIVATE_URLS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in emulator.client_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("FAL_AUDIO_OUTPUT_DIR", str(tmp_path / "output"))
        monkeypatch.setenv("FAL_AUDIO_DATA_DIR", str(tmp_path / "data"))
        assert emulator.client_env()["FAL_KEY"] == support.CANARY_KEY
        assert emulator.client_env()["HTTPS_PROXY"] == f"http://127.0.0.1:{emulator.port}"

        # A handler built in the child from data: a 2 s 48 kHz stereo WAV plus an echoed and a fixed field.
        remote_emulator.set_file_result(emulator, "fal-ai/lyria2", seconds=2.0, rate=48000, channels=2,
                                        echo={"prompt": ""}, extra={"note": "remote"})
        emulator.set_timing("fal-ai/lyria2", run_seconds=0.2)
        (audio,) = support.lyria(nodes, prompt="a remote river", seed=4242)

        assert audio["sample_rate"] == 48000
        assert tuple(audio["waveform"].shape) == (1, 2, 96000)
        assert audio["waveform"].abs().max() > 0.1  # the emulator's sine, not silence
        (submission,) = emulator.submissions
        assert submission.endpoint == "fal-ai/lyria2"
        assert submission.payload["prompt"] == "a remote river"
        assert submission.payload["seed"] == 4242
        assert submission.request_id in emulator.result_calls
        assert emulator.uploads == []
        times = emulator.job_times()
        assert times[submission.request_id][0] == "fal-ai/lyria2"
        assert time.monotonic() - times[submission.request_id][1] < 600  # the same clock in both processes
        url = emulator.audio_file(seconds=0.5, rate=8000, channels=1)
        assert emulator.file_bytes(url)[:4] == b"RIFF"

        # An error in the child comes back as an exception here, and the child keeps serving.
        with pytest.raises(remote_emulator.RemoteEmulatorError, match="TypeError.*no_such_setting"):
            emulator.set_timing("fal-ai/lyria2", no_such_setting=1)
        with pytest.raises(remote_emulator.RemoteEmulatorError, match="not a plain-data emulator method"):
            emulator.call("stop")
        assert len(emulator.submissions) == 1
    finally:
        emulator.stop()
    assert emulator.pid is None
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped
    emulator.stop()  # a second stop is a no-op


def test_the_handler_answers_what_the_spec_says(remote_emulator, tmp_path):
    """file_result_handler, the one both arrangements install: echo, extra and seconds_by."""
    import fal_emulator

    emulator = fal_emulator.FalEmulator(key=support.CANARY_KEY, workdir=tmp_path)
    handler = remote_emulator.file_result_handler(
        emulator, seconds=1.0, rate=8000, channels=1, seconds_by=("music_duration", {"285s": 3.0}),
        echo={"seed": 0, "tags": ""}, extra={"lyrics": ""})
    long = handler({"music_duration": "285s", "seed": 7})
    short = handler({"music_duration": "95s"})
    assert (long["seed"], long["tags"], long["lyrics"]) == (7, "", "")
    assert short["seed"] == 0
    # 16-bit mono at 8 kHz: 16000 bytes a second (after the same header).
    assert long["audio"]["file_size"] - short["audio"]["file_size"] == 2 * 16000


def test_the_emulator_process_dies_with_its_parent(tmp_path):
    """A parent killed outright (no stop(), no atexit) leaves no emulator process behind."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, importlib.util\n"
         f"spec = importlib.util.spec_from_file_location('remote_emulator', {str(BENCH / 'remote_emulator.py')!r})\n"
         "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
         f"emulator = module.RemoteEmulator(key='k:1', workdir={str(tmp_path)!r}); emulator.start()\n"
         "print(emulator.pid, flush=True)\n"
         "time.sleep(300)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 30
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
