"""The requests this ComfyUI has on fal right now, for the editor's fal panel (editor/panel.py).

The job runner registers each job when it starts, tells what its progress says and unregisters it when it
ends; a listener (the panel) hears of every start, change of state and end. Jobs run on ComfyUI's prompt
thread (each prompt in its own event loop) while the panel reads from the server's thread: a lock guards
the table. The panel's Cancel stops a job's task on its own loop; the job then cancels its request on fal
(as it does for ComfyUI's Cancel) and the node run ends with CancelledFromPanel.
"""

import asyncio
import threading
import time
from typing import Callable, List

from ..core.errors import FalAudioError

PANEL = "cancelled from the fal panel"
# The state of a job, from the start of its progress text (jobs/job.py, waiting.py, keep.py, transport/slots.py).
STATES = (("Waiting for a free request slot", "waiting for a slot"), ("Waiting", "waiting"),
          ("Uploading", "uploading"), ("Submitting", "submitting"), ("In queue", "queued"),
          ("Resuming", "running"), ("Running", "running"), ("Downloading", "downloading"),
          ("Decoding", "decoding"), ("Cancelling", "cancelling"), ("Reused", "reused"))


class CancelledFromPanel(FalAudioError):
    """A node run stopped by the Cancel button of the editor's fal panel."""


class _Live:
    __slots__ = ("job", "loop", "task", "state", "text", "panel")

    def __init__(self, job, loop, task):
        self.job, self.loop, self.task = job, loop, task
        self.state, self.text, self.panel = "starting", "", False


_lock = threading.Lock()
_live: dict = {}  # id(job) -> _Live
_listeners: List[Callable[[str], None]] = []
_latest = {"options": None}  # the call options of the newest job: its daily limit is the panel's


def listen(callback: Callable[[str], None]) -> None:
    """Call `callback(event)` ("started", "changed", "ended"), from any thread, whenever the table changes."""
    if callback not in _listeners:
        _listeners.append(callback)


def _tell(event: str) -> None:
    for callback in list(_listeners):
        try:
            callback(event)
        except Exception:  # noqa: BLE001 - the panel must never break a paid request
            pass


def started(job) -> None:
    loop = asyncio.get_running_loop()
    with _lock:
        _live[id(job)] = _Live(job, loop, asyncio.current_task())
        _latest["options"] = job.options
    _tell("started")


def said(job, text: str) -> None:
    """The job's progress text: its state changes when the text's start does."""
    state = next((name for start, name in STATES if text.startswith(start)), None)
    with _lock:
        live = _live.get(id(job))
        if live is None:
            return
        live.text = text
        changed = state is not None and state != live.state
        if changed:
            live.state = state
    if changed:
        _tell("changed")


def ended(job) -> None:
    with _lock:
        gone = _live.pop(id(job), None)
    if gone is not None:
        _tell("ended")


def stopped(job, exc: BaseException) -> BaseException:
    """What a job raises when its task was cancelled: CancelledFromPanel if the panel did it, else `exc`."""
    with _lock:
        live = _live.get(id(job))
        panel = live is not None and live.panel
    if not panel:
        return exc
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()  # the cancel was ours, and is answered by the error below
    request = f" (request {job.request_id})" if getattr(job, "request_id", None) else ""
    return CancelledFromPanel(f"{job.endpoint}: {job.label}{PANEL}{request}. The status under the node says what "
                              "was paid (fal bills successful outputs only).")


def latest_options():
    return _latest["options"]


def snapshot() -> List[dict]:
    """Every job in flight, oldest first, as plain data (never the key: endpoint, node, take, state, id, cost)."""
    now = time.monotonic()
    with _lock:
        lives = sorted(_live.values(), key=lambda live: live.job.started)
        rows = []
        for live in lives:
            job = live.job
            estimate = getattr(job.charge, "usd", None)
            rows.append({"request_id": getattr(job, "request_id", None), "endpoint": job.endpoint,
                         "node_id": None if job.progress.node_id is None else str(job.progress.node_id),
                         "take": job.label.rstrip(": "), "state": live.state, "status": live.text,
                         "elapsed_s": round(now - job.started, 1), "estimate_usd": estimate})
    return rows


def find(request_id: str):
    """The job in flight that follows `request_id`, or None."""
    with _lock:
        return next((live.job for live in _live.values() if getattr(live.job, "request_id", None) == request_id),
                    None)


def cancel(job) -> List[str]:
    """Stop `job` and every other job of its node run (the takes and clips of one run, as ComfyUI's Cancel
    does); returns their request ids. Each job cancels its own request on fal and ends with CancelledFromPanel."""
    with _lock:
        group = [live for live in _live.values() if live.job.progress is job.progress]
        for live in group:
            live.panel = True
            live.job.cancel_why = PANEL
    for live in group:
        live.loop.call_soon_threadsafe(_cancel_task, live)
    return [live.job.request_id for live in group if getattr(live.job, "request_id", None)]


def _cancel_task(live: _Live) -> None:
    """On the job's own loop: cancel its task if the job is still running (it unregisters on this same loop)."""
    with _lock:
        running = _live.get(id(live.job)) is live
    if running and live.task is not None:
        live.task.cancel()
