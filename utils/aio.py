"""asyncio helpers for steps that must not be cut short."""

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
