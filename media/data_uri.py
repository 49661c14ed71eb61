"""data: URIs (RFC 2397), which fal accepts and returns in place of hosted files.

The scheme and the ";base64" marker are case-insensitive (RFC 2397 and RFC 3986): "DATA:" and
";BASE64" mean the same as "data:" and ";base64".
"""

import base64
import urllib.parse


def is_data_uri(uri: str) -> bool:
    return isinstance(uri, str) and uri[:5].lower() == "data:"


def decode_data_uri(uri: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not is_data_uri(uri) or not sep:
        raise ValueError("not a data: URI")
    if header.lower().endswith(";base64"):
        return base64.b64decode(payload, validate=False)
    return urllib.parse.unquote_to_bytes(payload)


def media_type(uri: str) -> str:
    return uri[5:].partition(",")[0].split(";")[0].strip().lower() or "text/plain"
