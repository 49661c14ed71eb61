"""Download a file named by an http(s) or data: URL, for loading it as audio.

Bounded in size (checked against Content-Length first, then while streaming), never
inflated past that bound (the file is asked for uncompressed, and a server that compresses
anyway is decoded a small piece at a time, the cap counting decoded bytes), never
sending the fal key (a plain httpx client: it honours HTTPS_PROXY and SSL_CERT_FILE like
the rest of the pack), and never showing a URL's query string or user info: signed URLs
carry their tokens there, and messages end up in logs, screenshots and bug reports.
"""

import logging
import re
import urllib.parse
import zlib

from ..core import comfy
from ..core.errors import FalAudioError, invalid
from . import netguard
from .data_uri import decode_data_uri, media_type

CHUNK = 1 << 16
MAX_REDIRECTS = 5
# Longest http(s) URL taken (many servers and proxies stop at 8 KB); data: URIs are bounded by size instead.
MAX_URL_LENGTH = 8192
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Content types that are pages or documents, never audio: refused with a clear message.
_PAGE_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/javascript")
_PAGE_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")


class FetchFailed(FalAudioError):
    pass


def display_url(url: str) -> str:
    """What messages may show of a URL: scheme, host and path; a query becomes '?…'."""
    url = url.strip()
    if url[:5].lower() == "data:":
        return f"a data: URI ({media_type(url)})"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
    except ValueError:
        return "the URL"
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


def _scrub(text: str, url: str) -> str:
    """Remove a URL's query and user info from a third-party message."""
    parts = urllib.parse.urlsplit(url)
    text = text.replace(url, display_url(url))
    for secret in (parts.query, parts.username, parts.password):
        if secret:
            text = text.replace(secret, "…")
    return text


_QUERY = re.compile(r"(\w+://[^\s?#\"'<>]*)\?[^\s#\"'<>]*")
_USER_INFO = re.compile(r"(\w+://)[^\s/?#@\"'<>]*@")


class _HideQueries(logging.Filter):
    """httpx logs every request's full URL at INFO (which ComfyUI prints): cut the query.
    Works on the formatted message, whichever filter (e.g. the key redactor) ran first."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _USER_INFO.sub(r"\1", _QUERY.sub(r"\1?…", message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = _HideQueries()


def _guard_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def _is_page(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower().startswith(_PAGE_TYPES)


def _looks_like_page(data: bytes) -> bool:
    return data[:512].lstrip().lower().startswith(_PAGE_STARTS)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.3g} MB"


def _from_data_uri(url: str, max_bytes: int, node: str) -> bytes:
    shown = display_url(url)
    if _is_page(media_type(url)):
        raise FetchFailed(f"{node}: the URL is {shown}, not audio.")
    header, _, payload = url.partition(",")
    if header.lower().endswith(";base64") and len(payload) * 3 // 4 > max_bytes:  # refused before decoding
        raise FetchFailed(f"{node}: the URL is {shown} of about {_megabytes(len(payload) * 3 // 4)}, more than "
                          f"max_megabytes ({_megabytes(max_bytes)}).")
    try:
        data = decode_data_uri(url)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise FetchFailed(f"{node}: the URL is {shown} that cannot be decoded ({exc}).") from None
    if len(data) > max_bytes:
        raise FetchFailed(f"{node}: the URL is {shown} of {_megabytes(len(data))}, more than max_megabytes "
                          f"({_megabytes(max_bytes)}).")
    return data


def _check_http_url(url: str, node: str, field: str) -> None:
    """Refuse, naming the field, what no request should be made for: an overlong URL, no host or
    a malformed one (including a bad internationalized name), an invalid port."""
    import ipaddress

    import idna  # httpx's own dependency

    if len(url) > MAX_URL_LENGTH:
        raise invalid(node, field, f"is {len(url):,} characters long; an http(s) URL may be at most "
                                   f"{MAX_URL_LENGTH:,}")
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise invalid(node, field, f"has an invalid port ({parts.netloc.rpartition(':')[2][:12]!r}); a port is a "
                                   "number from 1 to 65535")
    host = parts.hostname or ""
    if not host:
        raise invalid(node, field, f"has no host name ({display_url(url)!r})")
    if parts.netloc.rpartition("@")[2].startswith("["):  # an IPv6 literal
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise invalid(node, field, "has an invalid IPv6 address in brackets") from None
        return
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii") if not host.isascii() else host
        for label in ascii_host.rstrip(".").split("."):
            if label.lower().startswith("xn--"):
                idna.decode(label)  # a punycode label must decode to a valid name
            if not _HOST_LABEL.fullmatch(label):
                raise idna.IDNAError(f"invalid label {label[:20]!r}")
    except (idna.IDNAError, UnicodeError) as exc:
        raise invalid(node, field, f"has a host name that is not a valid (internationalized) domain name ({exc})")\
            from None


class Undecodable(Exception):
    """An answer compressed in a way the pack does not decode, or damaged compressed data."""


# Asked of every server outside fal: the file as it is, so that nothing inflates on the way in.
IDENTITY = {"Accept-Encoding": "identity"}


class _Inflate:
    """Decode gzip or deflate in pieces of at most CHUNK bytes, never a whole decompressed buffer."""

    def __init__(self, encoding: str):
        self.encoding, self.raw_fallback = encoding, encoding == "deflate"
        self.inflater = zlib.decompressobj(15 if encoding == "deflate" else 31)

    def pieces(self, data: bytes):
        while True:
            try:
                out = self.inflater.decompress(data, CHUNK)
            except zlib.error as exc:
                if self.raw_fallback:  # "deflate" sent without its zlib wrapper, as some servers do
                    self.raw_fallback, self.inflater = False, zlib.decompressobj(-15)
                    continue
                raise Undecodable(f"sent damaged {self.encoding} data ({exc})") from None
            self.raw_fallback = False
            data = self.inflater.unconsumed_tail
            if out:
                yield out
            elif not data:
                return


async def body(response, max_bytes: int, too_large):
    """The bytes of a streamed httpx response as the server meant them, in pieces: decoded from
    gzip or deflate if the server compressed them although identity was asked, a piece at a time;
    `too_large()` is raised as soon as more than `max_bytes` came (decoded, or as sent)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise Undecodable(f"answered compressed with {encoding[:40]!r} although the file was asked for uncompressed; "
                          "the pack decodes only gzip and deflate")
    inflate = _Inflate(encoding) if encoding not in ("", "identity") else None
    sent = decoded = 0
    async for raw in response.aiter_raw(CHUNK):
        sent += len(raw)
        for piece in inflate.pieces(raw) if inflate else (raw,):
            decoded += len(piece)
            if max(sent, decoded) > max_bytes:
                raise too_large()
            yield piece
        if inflate and inflate.inflater.eof:
            return
    if inflate:
        raise Undecodable(f"sent {encoding} data that ends early")


def _refused(node: str, url: str, exc: Exception) -> FetchFailed:
    """The message for an address the guard refused (for the URL or a redirect hop) or a host not found."""
    hop = exc.url or url
    if isinstance(exc, netguard.Unresolvable):
        return FetchFailed(f"{node}: could not download {display_url(hop)}: {exc}.")
    via = f"{display_url(url)} redirects to {display_url(hop)}, and " if hop != url else f"{display_url(url)}: "
    return FetchFailed(f"{node}: {via}{exc}. Load Audio from URL fetches only public addresses, so that a shared "
                       f"workflow cannot reach into the server's network; whoever runs the server can allow private "
                       f"addresses with {netguard.ALLOW_ENV}=1.")


async def fetch(url: str, max_bytes: int, node: str, field: str = "url", transport=None) -> bytes:
    """The bytes behind `url` (http, https or data:), at most `max_bytes` of them.

    `transport` is an httpx transport for tests; normally httpx's own (with proxies from
    the environment) is used.
    """
    url = (url or "").strip()
    if not url:
        raise invalid(node, field, "is empty: give the http(s):// or data: URL of an audio file")
    if url[:5].lower() == "data:":
        return _from_data_uri(url, max_bytes, node)
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise invalid(node, field, f"is not a valid URL ({exc})") from None
    if scheme not in ("http", "https"):
        raise invalid(node, field, f"must be an http://, https:// or data: URL, got {display_url(url)!r}"
                      if scheme else "must be an http://, https:// or data: URL")
    _check_http_url(url, node, field)

    import httpx

    _guard_httpx_logs()
    shown = display_url(url)
    limit = f"max_megabytes ({_megabytes(max_bytes)})"
    data = bytearray()
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=15.0), follow_redirects=True,
                                     max_redirects=MAX_REDIRECTS, transport=transport) as http:
            netguard.guard(http, pin_connections=transport is None)
            headers = {"Accept": "audio/*, video/*;q=0.8, */*;q=0.5", **IDENTITY}
            async with http.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    hint = ("Check the URL (links to files often expire)." if response.status_code < 500
                            else "The server failed; try again later.")
                    raise FetchFailed(f"{node}: {shown} answered HTTP {response.status_code} "
                                      f"{response.reason_phrase}".rstrip() + f". {hint}")
                content_type = response.headers.get("content-type", "")
                if _is_page(content_type):
                    raise FetchFailed(f"{node}: {shown} is a web page or document ({content_type.split(';')[0]}), "
                                      "not an audio file. Use the direct link to the audio file itself.")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise FetchFailed(f"{node}: {shown} is {_megabytes(int(declared))}, more than {limit}. Nothing "
                                      "was downloaded; raise 'max_megabytes' to allow it.")
                too_large = lambda: FetchFailed(f"{node}: {shown} is larger than {limit}; the download was "  # noqa: E731
                                                "stopped. Raise 'max_megabytes' to allow it.")
                async for piece in body(response, max_bytes, too_large):
                    comfy.throw_if_interrupted()
                    data += piece
    except (netguard.Blocked, netguard.Unresolvable) as exc:  # for a hop, or at connect time
        raise _refused(node, url, exc) from None
    except Undecodable as exc:
        raise FetchFailed(f"{node}: {shown} {exc}.") from None
    except (httpx.InvalidURL, ValueError) as exc:  # e.g. a redirect to a malformed URL
        raise FetchFailed(f"{node}: could not download {shown}: invalid URL ({_scrub(str(exc), url)})") from None
    except httpx.HTTPError as exc:
        detail = _scrub(str(exc), url)
        raise FetchFailed(f"{node}: could not download {shown} ({type(exc).__name__}"
                          + (f": {detail}" if detail else "") + ")") from None
    if _looks_like_page(bytes(data)):
        raise FetchFailed(f"{node}: {shown} is a web page, not an audio file. Use the direct link to the audio "
                          "file itself.")
    return bytes(data)
