"""The one place that knows which strings are secret, and scrubs them from text."""

import base64
import threading

MASK = "<redacted>"
# Fragments shorter than this are too likely to collide with ordinary text.
_MIN_FRAGMENT = 8
# Base64 pieces shorter than this are not looked for (they would match ordinary base64 data).
_MIN_ENCODED = 16

_lock = threading.Lock()
_secrets: set = set()


def register(key: str) -> None:
    """Remember a key (and its id/secret halves) so redact() can scrub it anywhere."""
    if not key:
        return
    fragments = {f for f in (key, *key.split(":"), f"Key {key}") if len(f) >= _MIN_FRAGMENT}
    encoded = {e for f in fragments for e in _base64_forms(f) if len(e) >= _MIN_ENCODED}
    with _lock:
        _secrets.update(fragments | encoded)


def _base64_forms(secret: str) -> set:
    """What a secret looks like inside any base64 text (e.g. an echoed "Authorization: Key ..."
    header, base64-encoded): for each of the three alignments a secret can have inside the
    encoded data, the part of its encoding that does not depend on the bytes around it."""
    data = secret.encode("utf-8")
    forms = set()
    for skip in range(3):
        whole = data[skip:]
        whole = whole[: len(whole) // 3 * 3]
        if whole:
            standard = base64.b64encode(whole).decode("ascii")
            forms.update({standard, standard.replace("+", "-").replace("/", "_")})
    return forms


def redact(text) -> str:
    text = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def hidden_in(value) -> bool:
    """Whether a registered secret is in any string of a parsed JSON value (its keys too), however nested."""
    pending = [value]
    while pending:  # a stack, not recursion: JSON may nest as deep as its parser allows
        item = pending.pop()
        if isinstance(item, str):
            if redact(item) != item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
