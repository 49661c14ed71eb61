"""Endpoint ids a user types (the any-endpoint node): fal's owner/app[/path] shape and nothing else.

The id becomes the path of a request that carries the fal key, so it may only ever name a path on
fal's own hosts: letters, digits, '-' and '_' (and '.' after the owner, as in v2.6) in segments joined
by '/'. No scheme, host, port, user info, query, fragment, '..', percent-escapes, backslashes or
whitespace can pass.
"""

import re

from ..core.errors import invalid

PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+")
MAX_LENGTH = 200


def check(text, node: str, field: str) -> str:
    """`text` (stripped) if it is a fal endpoint id; a refusal naming the field otherwise."""
    endpoint = str(text).strip()
    if not endpoint:
        raise invalid(node, field, "is required and is empty")
    if len(endpoint) > MAX_LENGTH or PATTERN.fullmatch(endpoint) is None or ".." in endpoint:
        raise invalid(node, field, f"is {endpoint[:80]!r}, which is not a fal endpoint id: use owner/app[/path] as "
                                   "on fal's model page (letters, digits, '-', '_', '.'; no URL, host, query or "
                                   "spaces)")
    return endpoint
