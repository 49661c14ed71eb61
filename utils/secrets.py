"""The one place that knows which strings are secret, and scrubs them from text."""

import threading

MASK = "<redacted>"
# Fragments shorter than this are too likely to collide with ordinary text.
_MIN_FRAGMENT = 8

_lock = threading.Lock()
_secrets: set = set()


def register(key: str) -> None:
    """Remember a key (and its id/secret halves) so redact() can scrub it anywhere."""
    if not key:
        return
    fragments = {key, *key.split(":")}
    with _lock:
        _secrets.update(f for f in fragments if len(f) >= _MIN_FRAGMENT)


def redact(text) -> str:
    text = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
