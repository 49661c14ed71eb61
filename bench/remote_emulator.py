"""tests/fal_emulator.py's FalEmulator in a process of its own, steered from the bench's.

In a real ComfyUI, fal is another machine: its TLS, its file serving and its job clock do not
share an interpreter (and its GIL) with the pack. `RemoteEmulator` starts the emulator in a child
Python process (`python bench/remote_emulator.py --serve FD`, nothing re-imported from the
parent's __main__) and talks to it over a socket pair with `multiprocessing.connection`:

    parent -> child   (command, args, kwargs)
    child  -> parent  ("ok", value) | ("error", type name, message, child traceback)

Commands: "call" (one of the emulator's plain-data methods in CALLS), "set_file_result" (a result
handler described by data, built in the child: no lambda is pickled), "records" (the record lists,
plain tuples, built into small records in the parent), "job_times", "stop". An error in the child
is raised in the parent as RemoteEmulatorError (with the child's traceback).

The child dies with the parent: its command loop ends on EOF (the parent's end of the pair closes
when the parent exits, however it exits), and a watchdog thread exits it if it is re-parented
(a fork of the parent still holding the socket). `stop()` stops the emulator, waits for the
child to exit and reaps it.

`file_result_handler` builds the same handlers for an in-process FalEmulator, so the bench
installs them the same way in both arrangements (`set_file_result(emulator, endpoint, ...)`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import weakref
from collections import namedtuple
from multiprocessing.connection import Connection
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"

# Emulator methods "call" may run: their arguments and answers are plain data.
CALLS = frozenset({"set_timing", "audio_file", "add_file", "fault", "reset", "set_key", "retire", "remove_file",
                   "queue_request_ids", "set_prices", "set_pricing_mode", "file_bytes"})
# Record lists "records" returns, each as plain tuples (see _RECORDS).
RECORDS = ("submissions", "rejected", "status_calls", "result_calls", "cancels", "uploads", "downloads", "requests",
           "tunnels")
START_TIMEOUT = 60.0  # s: the child imports the emulator (trustme, av) and makes its CA
STOP_TIMEOUT = 10.0

# What the parent sees of the records (the emulator's own dataclasses, minus bulk data).
Submission = namedtuple("Submission", "endpoint payload headers request_id")
# An upload's bytes stay in the child: `size` is their length (the in-process Upload has `data`).
Upload = namedtuple("Upload", "size content_type file_name url")


class RemoteEmulatorError(RuntimeError):
    """An exception raised in the emulator's process (its type name in `remote_type`)."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str = ""):
        super().__init__(f"{remote_type}: {message}" + (
            f"\n--- in the emulator process ---\n{remote_traceback}" if remote_traceback else ""))
        self.remote_type = remote_type


# -- handlers described by data -------------------------------------------------------------


def file_result_handler(emulator, *, key: str = "audio", extra: dict | None = None, echo: dict | None = None,
                        seconds_by: tuple | None = None, **audio):
    """A handler answering `emulator.file_result(key, **audio)` (seconds, rate, channels, fmt, freq),
    plus `echo` (request field -> default: the field's value in the request, copied into the result),
    plus `extra` (fixed fields). `seconds_by=(field, {value: seconds})`: the file's length when the
    request's `field` has `value` (otherwise `audio["seconds"]`)."""
    echo = dict(echo or {})
    extra = dict(extra or {})
    field, lengths = seconds_by if seconds_by else (None, {})

    def handler(payload: dict):
        params = dict(audio)
        if field is not None and payload.get(field) in lengths:
            params["seconds"] = lengths[payload.get(field)]
        result = emulator.file_result(key, **params)
        for name, default in echo.items():
            result[name] = payload.get(name, default)
        result.update(extra)
        return result

    return handler


def set_file_result(emulator, endpoint: str, **spec) -> None:
    """Install a file_result_handler on either arrangement: a RemoteEmulator builds it in its process."""
    if isinstance(emulator, RemoteEmulator):
        emulator.set_file_result(endpoint, **spec)
    else:
        emulator.set_handler(endpoint, file_result_handler(emulator, **spec))


def job_times(emulator) -> dict:
    """{request_id: (endpoint, submitted_at)} with submitted_at on time.monotonic()'s clock (the
    system-wide CLOCK_MONOTONIC on Linux, so comparable across the two processes)."""
    if isinstance(emulator, RemoteEmulator):
        return emulator.job_times()
    return {job.request_id: (job.endpoint, job.submitted_at) for job in emulator.jobs}


def upload_size(upload) -> int:
    """Bytes of one upload record, from either arrangement."""
    size = getattr(upload, "size", None)
    return size if size is not None else len(upload.data)


# -- the parent's side ------------------------------------------------------------------------


class RemoteEmulator:
    """FalEmulator in a child process. `start()` returns once it listens; `stop()` ends it."""

    def __init__(self, key: str, workdir, strict_contracts: bool = True):
        self._key = key
        self._workdir = str(workdir)
        self._strict = strict_contracts
        self._conn: Connection | None = None
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one command at a time (a test may read records from another thread)
        self._finalizer = None
        self.port = 0
        self.ca_path = ""
        self._env: dict = {}

    # lifecycle

    def start(self) -> None:
        if self._process is not None:
            return
        ours, theirs = socket.socketpair()
        try:
            command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(theirs.fileno())]
            # Its stdout is our stderr: nothing it prints can land in the bench's table (stdout).
            self._process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                             stdout=2, cwd=str(HERE))
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._finalizer = weakref.finalize(self, _kill, self._process, self._conn)
        try:
            # The key goes over the socket, not the command line (which `ps` shows).
            self._conn.send((self._key, self._workdir, self._strict))
            if not self._conn.poll(START_TIMEOUT):
                raise RemoteEmulatorError("TimeoutError", f"the emulator process did not listen within "
                                                          f"{START_TIMEOUT:g} s")
            info = self._answer()
        except BaseException:
            self._finalizer()
            self._process = self._conn = None
            raise
        self.port, self.ca_path, self._env = info["port"], info["ca_path"], info["client_env"]

    def stop(self) -> None:
        """Stop the emulator, wait for its process to exit (killed after STOP_TIMEOUT) and reap it."""
        process, conn = self._process, self._conn
        if process is None:
            return
        self._process = self._conn = None
        try:
            with self._lock:
                conn.send(("stop", (), {}))
                if conn.poll(STOP_TIMEOUT):
                    conn.recv()
        except (OSError, EOFError):
            pass  # already gone
        finally:
            conn.close()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self._finalizer.detach()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> RemoteEmulator:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # the protocol

    def _answer(self):
        try:
            reply = self._conn.recv()
        except EOFError:
            code = self._process.poll()
            raise RemoteEmulatorError("EOFError", f"the emulator process ended (exit status {code})") from None
        if reply[0] == "ok":
            return reply[1]
        _, remote_type, message, remote_traceback = reply
        raise RemoteEmulatorError(remote_type, message, remote_traceback)

    def _command(self, command: str, *args, **kwargs):
        if self._conn is None:
            raise RemoteEmulatorError("RuntimeError", "the emulator process is not running")
        with self._lock:
            self._conn.send((command, args, kwargs))
            return self._answer()

    def call(self, method: str, *args, **kwargs):
        """One of the emulator's plain-data methods (CALLS), run in its process."""
        return self._command("call", method, *args, **kwargs)

    # what the bench uses

    def client_env(self) -> dict:
        return dict(self._env)

    @property
    def key(self) -> str:
        return self._env.get("FAL_KEY", self._key)

    def set_timing(self, endpoint=None, **kwargs) -> None:
        self.call("set_timing", endpoint, **kwargs)

    def audio_file(self, **kwargs) -> str:
        return self.call("audio_file", **kwargs)

    def add_file(self, data: bytes, name: str = "output.wav", content_type: str = "audio/wav") -> str:
        return self.call("add_file", data, name, content_type)

    def fault(self, method: str, path_regex: str, **kwargs) -> None:
        self.call("fault", method, path_regex, **kwargs)

    def reset(self) -> None:
        self.call("reset")

    def file_bytes(self, url: str) -> bytes:
        return self.call("file_bytes", url)

    def set_file_result(self, endpoint: str, **spec) -> None:
        """Answer `endpoint`'s submits with file_result_handler(**spec), built in the emulator's process."""
        self._command("set_file_result", endpoint, **spec)

    def set_handler(self, endpoint, handler) -> None:
        raise TypeError("a handler cannot cross into the emulator's process: use set_file_result()")

    def records(self, name: str, start: int = 0) -> list:
        """The record list `name` (RECORDS) from index `start`, fetched now."""
        rows = self._command("records", name, start)
        if name in ("submissions", "rejected"):
            return [Submission(*row) for row in rows]
        if name == "uploads":
            return [Upload(*row) for row in rows]
        return rows

    submissions = property(lambda self: self.records("submissions"))
    rejected = property(lambda self: self.records("rejected"))
    status_calls = property(lambda self: self.records("status_calls"))
    result_calls = property(lambda self: self.records("result_calls"))
    cancels = property(lambda self: self.records("cancels"))
    uploads = property(lambda self: self.records("uploads"))
    downloads = property(lambda self: self.records("downloads"))
    requests = property(lambda self: self.records("requests"))
    tunnels = property(lambda self: self.records("tunnels"))

    def job_times(self) -> dict:
        return self._command("job_times")


def _kill(process: subprocess.Popen, conn: Connection) -> None:
    """Last resort (garbage collection or interpreter exit without stop()): end the child."""
    try:
        conn.close()
    except OSError:
        pass
    if process.poll() is None:
        process.kill()
        process.wait()


# -- the child's side -------------------------------------------------------------------------


def _record(name: str, item):
    if name in ("submissions", "rejected"):
        return (item.endpoint, item.payload, item.headers, item.request_id)
    if name == "uploads":
        return (len(item.data), item.content_type, item.file_name, item.url)
    return item


def _serve(fd: int) -> None:
    import signal
    import time
    import traceback

    # Ctrl-C in the terminal reaches the whole process group: the parent handles it, and this
    # process ends when the parent's end of the socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watchdog():
        while True:
            if os.getppid() != parent:  # re-parented: the parent died
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()
    sys.path.insert(0, str(TESTS))
    conn = Connection(fd)
    try:
        key, workdir, strict = conn.recv()
    except (EOFError, OSError):
        return
    emulator = None
    try:
        import fal_emulator

        emulator = fal_emulator.FalEmulator(key=key, workdir=Path(workdir), strict_contracts=strict)
        emulator.start()
        conn.send(("ok", {"port": emulator.port, "ca_path": emulator.ca_path, "client_env": emulator.client_env()}))
        while True:
            try:
                command, args, kwargs = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            try:
                if command == "stop":
                    emulator.stop()
                    conn.send(("ok", None))
                    return
                if command == "call":
                    method, *args = args
                    if method not in CALLS:
                        raise ValueError(f"not a plain-data emulator method: {method!r} (one of {sorted(CALLS)})")
                    value = getattr(emulator, method)(*args, **kwargs)
                elif command == "set_file_result":
                    (endpoint,) = args
                    emulator.set_handler(endpoint, file_result_handler(emulator, **kwargs))
                    value = None
                elif command == "records":
                    name, start = args
                    if name not in RECORDS:
                        raise ValueError(f"no record list {name!r} (one of {RECORDS})")
                    with emulator._lock:
                        items = list(getattr(emulator, name)[start:])
                    value = [_record(name, item) for item in items]
                elif command == "job_times":
                    value = {job.request_id: (job.endpoint, job.submitted_at) for job in emulator.jobs}
                else:
                    raise ValueError(f"unknown command {command!r}")
                reply = ("ok", value)
            except Exception as exc:  # noqa: BLE001 - every error goes back to the parent
                reply = ("error", type(exc).__name__, str(exc), traceback.format_exc())
            try:
                conn.send(reply)
            except (OSError, EOFError):
                return
    except Exception as exc:  # noqa: BLE001 - e.g. the emulator failed to start
        try:
            conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
        except OSError:
            pass
    finally:
        if emulator is not None:
            emulator.stop()
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]))
    else:
        sys.exit("usage: remote_emulator.py --serve FD (started by RemoteEmulator)")
