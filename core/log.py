"""Logging for the pack: one named logger tree whose records never carry a secret."""

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
