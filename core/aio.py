"""asyncio helpers: steps that must not be cut short, and caches kept per event loop."""

import asyncio
from typing import Any, Awaitable, Tuple


async def finish(awaitable: Awaitable) -> Tuple[Any, bool]:
    """Await `awaitable` to its end even if the caller is cancelled meanwhile.

    For a step whose outcome must be known once started, e.g. a submit that fal may have
    taken (and bills): cutting it short would lose the request id. Returns (result,
    cancelled): `cancelled` says a cancellation arrived and was held back, and the caller
    must act on it (cancel the request on fal) and then raise asyncio.CancelledError.
    An exception of the awaitable is raised as is.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.done() and task.cancelled():
                raise
            cancelled = True  # the caller was cancelled, not the step: wait on


def per_loop(cache: dict) -> dict:
    """The part of `cache` that belongs to the running event loop.

    Network clients (and locks) are bound to the loop that created them, and ComfyUI may
    run each prompt in a new loop: entries of loops that have closed are dropped, so their
    connections are released instead of piling up prompt after prompt.
    """
    loop = asyncio.get_running_loop()
    for stale in [other for other in cache if other.is_closed()]:
        del cache[stale]
    return cache.setdefault(loop, {})
