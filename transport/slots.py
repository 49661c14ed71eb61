"""A pack-wide cap on fal requests in flight.

ComfyUI runs a node once per item of a list input (32 prompts: 32 runs at once), and takes
and clip batches fan out into one request each. They all run concurrently, but at most
`max_concurrent_requests` (fal Client, default 16: fal's usual account concurrency) are in
flight at a time; the rest wait here, first come first served, before anything is sent.
Past fal's own limit fal answers 429, and a submit that meets a 429 is resent with backoff
(transport.gateway); waiting here keeps that from happening in the first place.

A slot is taken right before the submit and given back when the job ends, whatever the
way. The count is shared by every event loop of the process (ComfyUI runs each prompt in a
new loop), so it is kept under a threading lock and waiters are woken on their own loop.
"""

import asyncio
import threading
from collections import deque
from typing import Callable, Optional


class _Waiter:
    __slots__ = ("loop", "future", "cap", "granted")

    def __init__(self, loop, future, cap: int):
        self.loop, self.future, self.cap, self.granted = loop, future, cap, False


class Slots:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: deque = deque()
        self._holders: set = set()
        self.in_flight = 0
        self.peak = 0  # the most ever in flight at once (tests and the bench read it)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    async def take(self, holder, cap: int, on_wait: Optional[Callable[[int, int], None]] = None) -> None:
        """Hold a slot for `holder` (released by release(holder)); wait while `cap` are in
        flight, calling on_wait(in_flight, waiting_before_us) once. Cancelling the wait
        takes nothing."""
        cap = max(1, int(cap))
        loop = asyncio.get_running_loop()
        with self._lock:
            if holder in self._holders:
                return
            if self.in_flight < cap and not self._waiting:
                self._grant(holder)
                return
            waiter = _Waiter(loop, loop.create_future(), cap)
            self._waiting.append(waiter)
            in_flight, ahead = self.in_flight, len(self._waiting) - 1
        if on_wait is not None:
            on_wait(in_flight, ahead)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if not waiter.granted:
                    self._waiting.remove(waiter)
                    self._wake()  # a waiter behind us may fit now
                    raise
            # Granted while being cancelled: give the slot back (unless _deliver will).
            if waiter.future.done() and not waiter.future.cancelled():
                self._give_back()
            raise
        with self._lock:
            self._holders.add(holder)

    def release(self, holder) -> None:
        """Give back the slot `holder` holds (nothing if it holds none)."""
        with self._lock:
            if holder not in self._holders:
                return
            self._holders.discard(holder)
        self._give_back()

    # -- inside the lock -------------------------------------------------------------

    def _grant(self, holder) -> None:
        self._holders.add(holder)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def _wake(self) -> None:
        """Hand free slots to the waiters in order (each within its own cap)."""
        woken = []
        while self._waiting and self.in_flight < self._waiting[0].cap:
            waiter = self._waiting.popleft()
            waiter.granted = True
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            woken.append(waiter)
        for waiter in woken:
            try:
                waiter.loop.call_soon_threadsafe(self._deliver, waiter)
            except RuntimeError:  # its loop has closed: nobody will use the slot
                self.in_flight -= 1

    # -- outside the lock ------------------------------------------------------------

    def _give_back(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self._wake()

    def _deliver(self, waiter: _Waiter) -> None:
        if waiter.future.done():  # the wait was cancelled before the slot arrived
            self._give_back()
        else:
            waiter.future.set_result(None)


SLOTS = Slots()


def waiting_text(in_flight: int, ahead: int) -> str:
    return (f"Waiting for a free request slot ({in_flight} requests in flight"
            + (f", {ahead} waiting before this one" if ahead else "") + ")")
