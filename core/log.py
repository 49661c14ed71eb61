"""Logging for the pack: one named logger tree whose records never carry a secret."""

import contextlib
import contextvars
import logging

from . import secrets

ROOT = "fal_audio"


class RedactingFilter(logging.Filter):
    """Rewrites a record's message so that no registered secret survives in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = secrets.redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are formatted later by the handler; keep the text but not the secret.
            record.exc_text = secrets.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(f"{ROOT}.{name}")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def guard_third_party_loggers() -> None:
    """fal_client logs retried requests with the error body; httpx logs URLs. Filter both."""
    for name in ("fal_client", "fal_client.client", "httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# Set while the pack makes its own requests (a node run, a route of the editor): httpx's "HTTP Request: ..." INFO
# line of each is dropped, while other packs' requests are logged as httpx's logger is set. The variable follows
# the pack's calls into their tasks and threads (asyncio and to_thread copy the context; so does the hop to the
# network loop, transport/gateway.py on_network).
_OWN_REQUESTS = contextvars.ContextVar("fal_audio_own_requests", default=False)


class QuietOwnRequests(logging.Filter):
    """On httpx's logger: drops the INFO lines of requests made by the pack, keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_OWN_REQUESTS.get() and record.levelno <= logging.INFO)


_QUIET = QuietOwnRequests()


@contextlib.contextmanager
def own_requests():
    """Around the pack's own calls: httpx does not log their requests at INFO (never changes httpx's level)."""
    httpx_logger = logging.getLogger("httpx")
    if _QUIET not in httpx_logger.filters:
        httpx_logger.addFilter(_QUIET)
    token = _OWN_REQUESTS.set(True)
    try:
        yield
    finally:
        _OWN_REQUESTS.reset(token)
