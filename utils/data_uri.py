"""data: URIs (RFC 2397), which fal accepts and returns in place of hosted files."""

import base64
import urllib.parse


def decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not uri.startswith("data:") or not sep:
        raise ValueError("not a data: URI")
    if header.endswith(";base64"):
        return base64.b64decode(payload, validate=False)
    return urllib.parse.unquote_to_bytes(payload)


def media_type(uri: str) -> str:
    return uri[5:].partition(",")[0].split(";")[0] or "text/plain"
