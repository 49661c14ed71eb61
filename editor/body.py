"""Reading a request body on ComfyUI's server without buffering a huge one (the routes of routes.py and panel.py)."""

from typing import Optional


async def read_body(request, limit: int) -> Optional[bytes]:
    """The request's body, or None for one longer than `limit` bytes (read no further than that)."""
    if (request.content_length or 0) > limit:
        return None
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return None
