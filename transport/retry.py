"""Retrying fal's calls, in one place: the submit, the status and result calls, uploads and
result downloads all pause and try again through `again()` (or `retrying()`, its loop).

Which failures are worth another try is the caller's to say: a dropped connection for calls
that are safe to repeat (plus the server's own trouble, 5xx, where asked), and for a submit only
answers that prove fal did not take it. The pause doubles from `first` up to `cap`; after
`attempts` tries the failure is raised as is.
"""

import asyncio
from typing import Awaitable, Callable

from ..core.log import get_logger

log = get_logger("retry")


async def again(exc: Exception, attempt: int, attempts: int, first: float, cap: float, what: str,
                sleep: Callable[[float], Awaitable] = asyncio.sleep) -> int:
    """`exc` ended try number `attempt` (1 = the first) of at most `attempts`: raise it when the
    tries are used up, else say so, pause and return the next try's number."""
    if attempt >= attempts:
        raise exc
    log.warning("%s failed (%s); retrying", what, getattr(exc, "status_code", None) or type(exc).__name__)
    await sleep(min(first * 2 ** (attempt - 1), cap))
    return attempt + 1


async def retrying(call: Callable[[], Awaitable], worth: Callable[[Exception], bool], what: str, attempts: int,
                   first: float, cap: float, sleep: Callable[[float], Awaitable] = asyncio.sleep):
    """`await call()`, tried again while it fails in a way `worth` retrying (see again())."""
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 - `worth` decides; the rest is raised as is
            if not worth(exc):
                raise
            attempt = await again(exc, attempt, attempts, first, cap, what, sleep)
