"""A local, in-process fake of the fal.ai HTTP services for tests.

The real, unmodified ``fal_client`` talks to the emulator purely through environment
variables (see :meth:`FalEmulator.client_env`):

* ``HTTPS_PROXY`` points httpx at our single TCP server, which acts as an HTTP proxy.
  Every ``https://`` request arrives as ``CONNECT host:443``; we answer ``200`` and then
  terminate TLS ourselves on that socket (a man-in-the-middle of our own making), so no
  byte ever leaves 127.0.0.1 - there is no code path that opens an outbound connection.
* ``SSL_CERT_FILE`` makes httpx trust a throw-away ``trustme`` CA whose leaf certificate
  covers the fal hosts.
* ``FAL_KEY`` is the API key the emulator accepts.

Decrypted requests are routed by the CONNECT host:

* ``queue.fal.run`` / ``queue.falrun.com`` (backup domain): submit, status, SSE status
  stream, result, cancel.
* ``fal.run`` / ``falrun.com``: synchronous ``run()`` (runs the handler immediately).
* ``rest.fal.ai``: CDN token and the GCS-style upload initiation (upload fallback).
* ``v3.fal.media`` / ``fal.media``: file upload and download.
* ``api.fal.ai``: the Platform API's price list, ``GET /v1/models/pricing?endpoint_id=a,b``
  (1-50 ids, the API key; endpoints it does not list are left out of the answer; see
  :meth:`FalEmulator.set_prices` and :meth:`FalEmulator.set_pricing_mode`).

Tests steer behaviour with handlers (:meth:`FalEmulator.set_handler`), job timing
(:meth:`FalEmulator.set_timing`) and injected faults (:meth:`FalEmulator.fault`), and
inspect what the client did via the record lists (``submissions``, ``requests``, ...).
"""

from __future__ import annotations

import base64
import copy
import http.server
import io
import json
import logging
import math
import pathlib
import re
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import trustme

import fal_contracts

logger = logging.getLogger(__name__)

QUEUE_HOSTS = ("queue.fal.run", "queue.falrun.com")
RUN_HOSTS = ("fal.run", "falrun.com")
REST_HOST = "rest.fal.ai"
CDN_HOSTS = ("v3.fal.media", "fal.media")
PLATFORM_HOST = "api.fal.ai"
ALL_HOSTS = (*QUEUE_HOSTS, *RUN_HOSTS, REST_HOST, *CDN_HOSTS, PLATFORM_HOST)

QUEUE_BASE_URL = "https://queue.fal.run"
CDN_BASE_URL = "https://v3.fal.media"
# Same namespaces fal_client.client.APP_NAMESPACES knows: "<ns>/<owner>/<alias>/..."
APP_NAMESPACES = ("workflows", "comfy")

DEFAULT_LOGS = ["Loading model", "Generating", "Encoding"]
SSE_POLL_SECONDS = 0.01
SSE_KEEPALIVE_SECONDS = 1.0
# Idle keep-alive connections are closed after this long (httpx itself drops idle
# pooled connections after 5 s, so this only reaps abandoned sockets).
CONNECTION_IDLE_TIMEOUT = 60.0

AUDIO_FORMATS = {
    # fmt: (container format, encoder, content type)
    "wav": ("wav", "pcm_s16le", "audio/wav"),
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "flac": ("flac", "flac", "audio/flac"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    # Headerless samples (ElevenLabs' pcm_*, ulaw_8000, alaw_8000; MiniMax's pcm): no container at all.
    "pcm": ("s16le", "pcm_s16le", "application/octet-stream"),
    "ulaw": ("mulaw", "pcm_mulaw", "application/octet-stream"),
    "alaw": ("alaw", "pcm_alaw", "application/octet-stream"),
}
# Encoders that only take fixed-size frames.
FRAME_SIZES = {"mp3": 1152, "opus": 960}

# What the emulated Platform API lists by default: (unit_price, unit) per endpoint, USD.
DEFAULT_PRICES = {
    "fal-ai/lyria2": (0.1, "request"),
    "fal-ai/ace-step": (0.0002, "second"),
    "fal-ai/ace-step/prompt-to-audio": (0.0002, "second"),
    "fal-ai/ace-step/audio-inpaint": (0.0002, "second"),
    "fal-ai/ace-step/audio-outpaint": (0.0002, "second"),
    "fal-ai/ace-step/audio-to-audio": (0.0002, "second"),
    "cassetteai/music-generator": (0.02, "minute"),
    "cassetteai/sound-effects-generator": (0.001, "second"),
    "fal-ai/diffrhythm": (0.01, "10 seconds"),
    "fal-ai/elevenlabs/sound-effects": (0.002, "second"),
    "fal-ai/elevenlabs/sound-effects/v2": (0.002, "second"),
    "fal-ai/yue": (0.05, "request"),
    "fal-ai/mmaudio-v2": (0.001, "second"),
    "fal-ai/mmaudio-v2/text-to-audio": (0.001, "second"),
    "fal-ai/minimax-music": (0.035, "request"),
    "fal-ai/minimax-music/v2.6": (0.15, "audio"),
    "fal-ai/stable-audio-25/text-to-audio": (0.2, "audio"),
    "fal-ai/elevenlabs/music": (0.6, "minute"),
    "fal-ai/lyria3": (0.04, "audio"),
    "fal-ai/demucs": (0.0007, "second"),
    "fal-ai/elevenlabs/tts/eleven-v3": (0.1, "1000 characters"),
    "fal-ai/minimax/speech-2.8-hd": (0.1, "1000 characters"),
    "fal-ai/elevenlabs/speech-to-text/scribe-v2": (0.008, "minute"),
}
PRICING_MODES = ("normal", "rising", "not_json", "no_prices", "bad_rows")
PRICING_PAGE = 20  # rows per page before next_cursor/has_more

NGINX_ERROR_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class EmulatedError(Exception):
    """Raised by a handler to make the emulated job fail on fal's side.

    ``status``/``body`` are what ``GET result`` then answers with; the status endpoint
    reports ``COMPLETED`` with ``error``/``error_type`` derived from ``body``.
    """

    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body!r}")
        self.status = status
        self.body = body


@dataclass
class Submission:
    endpoint: str
    payload: Any
    headers: dict[str, str]  # lower-case keys
    request_id: str


@dataclass
class Upload:
    data: bytes
    content_type: str
    file_name: str | None
    url: str


@dataclass
class Timing:
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    queue_position: int = 3
    logs: list[str] | None = None
    stuck_in_queue: bool = False

    @property
    def log_messages(self) -> list[str]:
        return list(DEFAULT_LOGS if self.logs is None else self.logs)


@dataclass
class Job:
    """One queued request. ``state`` is derived from the clock and the timing snapshot
    taken at submit time (mutate ``job.timing`` to change a running job's fate)."""

    request_id: str
    endpoint: str
    app_base: str  # "<owner>/<alias>" (or "<ns>/<owner>/<alias>"): the sub-path is dropped
    payload: Any
    headers: dict[str, str]
    timing: Timing
    result: Any = None
    error: EmulatedError | None = None
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.monotonic)
    submitted_wall: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def response_url(self) -> str:
        return f"{QUEUE_BASE_URL}/{self.app_base}/requests/{self.request_id}"

    def elapsed(self) -> float:
        return time.monotonic() - self.submitted_at

    @property
    def state(self) -> str:
        if self.cancelled:
            return "CANCELLED"
        t = self.timing
        elapsed = self.elapsed()
        if t.stuck_in_queue or elapsed < t.queue_seconds:
            return "IN_QUEUE"
        if elapsed < t.queue_seconds + t.run_seconds:
            return "IN_PROGRESS"
        return "COMPLETED"

    def next_change(self) -> float:
        """Seconds until the clock next changes what the status says (a log line appears, the run
        starts or ends); infinity if nothing is due."""
        t = self.timing
        if self.cancelled or t.stuck_in_queue:
            return math.inf
        messages = t.log_messages
        due = [t.queue_seconds, t.queue_seconds + t.run_seconds]
        due += [t.queue_seconds + t.run_seconds * i / len(messages) for i in range(1, len(messages))]
        elapsed = self.elapsed()
        ahead = [moment - elapsed for moment in due if moment > elapsed]
        return min(ahead) + 0.0005 if ahead else math.inf

    def queue_position(self) -> int:
        t = self.timing
        if t.stuck_in_queue:
            return t.queue_position
        if t.queue_seconds <= 0:
            return 0
        remaining = max(0.0, 1.0 - self.elapsed() / t.queue_seconds)
        return max(0, math.ceil(t.queue_position * remaining))

    def visible_logs(self) -> list[dict[str, str]]:
        """Logs revealed so far: the i-th of n messages appears at run_start + i/n * run."""
        t = self.timing
        messages = t.log_messages
        if not messages:
            return []
        run_elapsed = self.elapsed() - t.queue_seconds
        if self.state == "COMPLETED" or t.run_seconds <= 0:
            count = len(messages)
        else:
            count = min(len(messages), int(run_elapsed / t.run_seconds * len(messages)) + 1)
        out = []
        for i, message in enumerate(messages[:count]):
            offset = t.queue_seconds + t.run_seconds * i / len(messages)
            stamp = self.submitted_wall + timedelta(seconds=offset)
            out.append(
                {"message": message, "level": "INFO", "source": "user", "timestamp": stamp.isoformat()}
            )
        return out

    def status_payload(self, with_logs: bool) -> dict[str, Any]:
        base = {"request_id": self.request_id, "response_url": self.response_url}
        state = self.state
        if state == "CANCELLED":
            return {
                "status": "COMPLETED", "logs": [], "metrics": {},
                "error": "Request cancelled", "error_type": "request_cancelled", **base,
            }
        if state == "IN_QUEUE":
            return {"status": "IN_QUEUE", "queue_position": self.queue_position(), **base}
        logs = self.visible_logs() if with_logs else None
        if state == "IN_PROGRESS":
            return {"status": "IN_PROGRESS", "logs": logs, **base}
        payload = {
            "status": "COMPLETED", "logs": logs,
            "metrics": {"inference_time": self.timing.run_seconds}, **base,
        }
        if self.error is not None:
            payload["error"], payload["error_type"] = _describe_error(self.error)
        return payload


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int | None
    body: Any
    times: int  # < 0: unlimited
    close: bool
    delay: float
    truncate: bool
    headers: dict[str, str]
    skip: int = 0  # let this many matching requests through untouched first
    delay_answer: float = 0.0  # handle the request at once, hold back its answer this long
    echo_auth: bool = False  # error body echoes the Authorization header (plain and base64)


@dataclass
class _StoredFile:
    data: bytes
    content_type: str


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), "application/json", dict(headers or {}))


def _describe_error(error: EmulatedError) -> tuple[str, str]:
    """(error, error_type) as the queue status endpoint reports a failed job."""
    body = error.body
    message: str
    error_type: str | None = None
    if isinstance(body, dict):
        detail = body.get("detail", body)
        message = detail if isinstance(detail, str) else json.dumps(detail)
        error_type = body.get("error_type")
    elif isinstance(body, str):
        message = body
    else:
        message = json.dumps(body)
    if error_type is None:
        error_type = "validation_error" if error.status == 422 else "runner_error"
    return message, error_type


def _app_base(endpoint: str) -> str:
    """Endpoint id -> the app prefix fal uses in queue URLs (sub-path dropped)."""
    parts = [p for p in endpoint.split("/") if p]
    n = 3 if parts and parts[0] in APP_NAMESPACES else 2
    return "/".join(parts[:n])


def encode_sine(
    seconds: float = 1.0, rate: int = 44100, channels: int = 2, fmt: str = "wav", freq: float = 440.0
) -> bytes:
    """Encode a sine (amplitude 0.5, channel c at freq*(c+1)) with PyAV."""
    import numpy as np

    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    n = int(round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    samples = np.stack(
        [0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    ).astype(np.float32)
    return encode_samples(samples, rate, fmt)


def encode_samples(samples, rate: int, fmt: str = "wav") -> bytes:
    """Encode float32 samples [channels, frames] (mono or stereo) as a wav/mp3/flac file with PyAV."""
    import av  # heavy imports kept local: only needed when audio is synthesised

    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"unsupported audio format {fmt!r}; use one of {sorted(AUDIO_FORMATS)}")
    container_format, codec, _ = AUDIO_FORMATS[fmt]
    channels = samples.shape[0]
    layout = "mono" if channels == 1 else "stereo"

    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate = rate
        # The MP3 and Opus encoders only accept fixed-size frames; the resampler re-chunks.
        resampler = av.AudioResampler(
            format=stream.codec_context.format, layout=layout, rate=rate,
            frame_size=FRAME_SIZES.get(fmt),
        )
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _crc(data: bytes, poly: int, bits: int) -> int:
    """FLAC's CRC-8 (poly 0x07) and CRC-16 (poly 0x8005): MSB first, initial value 0."""
    top, mask, crc = 1 << (bits - 1), (1 << bits) - 1, 0
    for byte in data:
        crc ^= byte << (bits - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def encode_silent_flac(seconds: float, rate: int = 44100, channels: int = 2, state_length: bool = True) -> bytes:
    """A decode bomb: a FLAC of `seconds` of silence written by hand, about 17 bytes per 65535 frames
    (3 hours of 44.1 kHz stereo: ~85 KB, 3.8 GB once decoded to float32). `state_length=False` leaves
    the total out of STREAMINFO, so only decoding tells how long it is."""
    block, total = 65535, int(seconds * rate)
    info = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | (total if state_length else 0)  # 16-bit samples
    streaminfo = block.to_bytes(2, "big") * 2 + bytes(6) + info.to_bytes(8, "big") + bytes(16)
    out = bytearray(b"fLaC" + bytes([0x80]) + len(streaminfo).to_bytes(3, "big") + streaminfo)
    done = number = 0
    while done < total:
        size = min(block, total - done)
        # Frame header: sync, fixed blocking, 16-bit block size at the end, rate/size from STREAMINFO,
        # independent channels, the frame number UTF-8 coded; then one CONSTANT (zero) subframe per channel.
        coded = (bytes([number]) if number < 0x80 else bytes([0xC0 | number >> 6, 0x80 | number & 0x3F])
                 if number < 0x800 else bytes([0xE0 | number >> 12, 0x80 | number >> 6 & 0x3F, 0x80 | number & 0x3F]))
        header = bytes([0xFF, 0xF8, 0x70, (channels - 1) << 4]) + coded + (size - 1).to_bytes(2, "big")
        frame = header + bytes([_crc(header, 0x07, 8)]) + bytes(3) * channels
        out += frame + _crc(frame, 0x8005, 16).to_bytes(2, "big")
        done, number = done + size, number + 1
    return bytes(out)


class _SocketWriter(io.BufferedIOBase):
    """Unbuffered writer that always sends everything (a raw socket file may write
    partially); the same thing socketserver uses internally for wbufsize=0."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._sock.sendall(data)
        return len(data)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 overflows when many asyncio tasks connect at once, and
    # a dropped SYN costs a 1 s retransmit.
    request_queue_size = 128

    def __init__(self, emulator: FalEmulator):
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def handle_error(self, request, client_address) -> None:  # noqa: D401 - stdlib hook
        # Clients dropping connections mid-request is normal in fault tests; don't let
        # socketserver print tracebacks to stderr.
        logger.debug("fal emulator: connection error from %s", client_address, exc_info=True)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer
    timeout = CONNECTION_IDLE_TIMEOUT
    server_version = "fal-emulator"

    tunnel_host: str | None = None

    # -- connection lifecycle -------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, Nagle + the client's delayed ACK add ~40 ms to every
        # response written in more than one segment.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        # After the TLS wrap the original socket object is detached, so socketserver's
        # own close would not release the descriptor; close the TLS socket ourselves.
        try:
            self.connection.close()
        except OSError:
            pass

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ssl.SSLError, ValueError) as exc:
            logger.debug("fal emulator: connection ended: %r", exc)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("fal emulator %s: " + format, self.tunnel_host or "-", *args)

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if self.tunnel_host is not None or port != "443" or host not in ALL_HOSTS:
            self._send(_Response(403, f"fal emulator refuses to tunnel to {self.path}".encode(), "text/plain"),
                       close=True)
            return
        with self.server.emulator._lock:
            self.server.emulator.tunnels.append(host)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()

        raw = self.connection
        tls = self.server.emulator._ssl_context.wrap_socket(raw, server_side=True)
        with self.server.connections_lock:
            self.server.connections.discard(raw)
            self.server.connections.add(tls)
        self.connection = self.request = tls
        self.rfile = tls.makefile("rb", -1)
        self.wfile = _SocketWriter(tls)
        self.tunnel_host = host
        # handle() keeps calling handle_one_request() on the new (decrypted) streams
        # while close_connection stays False (HTTP/1.1 keep-alive).
        self.close_connection = False

    def _dispatch(self) -> None:
        if self.tunnel_host is None:
            # Plain-HTTP proxying would mean forwarding to the internet: never.
            self._send(_Response(403, b"fal emulator only serves CONNECT tunnels", "text/plain"), close=True)
            return
        body = self._read_body()
        self.server.emulator._handle(self, self.command, self.tunnel_host, self.path, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    # -- I/O helpers ----------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: _Response, *, close: bool = False, truncate: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close or truncate:
            self.send_header("Connection", "close")
        # Headers and body go out in a single write (one TLS record where possible).
        body = b"" if self.command == "HEAD" else response.body
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body[: len(body) // 2] if truncate else body)
        self.flush_headers()
        if close or truncate:
            self.close_connection = True

    def drop(self) -> None:
        """Close the connection without sending anything."""
        self.close_connection = True
        try:
            socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
        except OSError:
            pass


class FalEmulator:
    """Local fake of fal.ai reachable through an HTTPS proxy on 127.0.0.1."""

    cdn_token = "t"

    def __init__(self, key: str, workdir: pathlib.Path, strict_contracts: bool = True):
        # Submits are checked against tests/contracts.json (unknown field, type, enum, range,
        # required -> 422, as fal's apps answer); off only for tests of the transport itself.
        self.strict_contracts = strict_contracts
        self._initial_key = self._key = key
        self._workdir = pathlib.Path(workdir)
        self._lock = threading.RLock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port: int = 0
        self.ca_path: str = ""
        self._ca = trustme.CA()
        self._leaf = self._ca.issue_cert(*ALL_HOSTS)
        self._ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._leaf.configure_cert(self._ssl_context)
        self._ssl_context.set_alpn_protocols(["http/1.1"])
        self._audio_cache: dict[tuple, bytes] = {}  # survives reset(): pure function of params
        self.reset()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._workdir.mkdir(parents=True, exist_ok=True)
        ca_file = self._workdir / "fal_emulator_ca.pem"
        self._ca.cert_pem.write_to_path(str(ca_file))
        self.ca_path = str(ca_file)
        self._stopping.clear()
        self._server = _ProxyServer(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fal-emulator-{self.port}", daemon=True,
        )
        self._thread.start()
        logger.debug("fal emulator listening on 127.0.0.1:%d", self.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        # Wake handler threads blocked reading keep-alive connections.
        with server.connections_lock:
            connections = list(server.connections)
        for conn in connections:
            try:
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FalEmulator:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def client_env(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.port}"
        no_proxy = "127.0.0.1,localhost"
        return {
            "HTTPS_PROXY": proxy,
            "NO_PROXY": no_proxy,
            # urllib (and therefore httpx) prefers the lower-case variables when both
            # exist, so set them too or an ambient https_proxy would win.
            "https_proxy": proxy,
            "no_proxy": no_proxy,
            "SSL_CERT_FILE": self.ca_path,
            "FAL_KEY": self._key,
        }

    @property
    def key(self) -> str:
        return self._key

    def set_key(self, key: str) -> None:
        with self._lock:
            self._key = key

    def reset(self) -> None:
        """Forget jobs, records, handlers, timings, faults and files, and restore the key
        given to the constructor. The server, port and CA stay as they are."""
        with self._lock:
            self._key = self._initial_key
            self.submissions: list[Submission] = []
            self.rejected: list[Submission] = []  # submits refused by the endpoint's contract (422)
            self.cancels: list[str] = []
            self.status_calls: list[str] = []
            self.result_calls: list[str] = []
            self.uploads: list[Upload] = []
            self.downloads: list[str] = []
            self.requests: list[tuple[str, str]] = []
            self.tunnels: list[str] = []  # host of every CONNECT (one per new client connection)
            self._jobs: dict[str, Job] = {}
            self._handlers: dict[str, Callable[[dict], Any]] = {}
            self._timings: dict[str | None, Timing] = {None: Timing()}
            self._faults: list[_Fault] = []
            self._files: dict[str, _StoredFile] = {}
            self._pending_gcs: dict[str, tuple[str, str]] = {}  # upload id -> (file path, content type)
            self._retired: set[str] = set()  # endpoints fal no longer serves: submit answers 404
            self._next_request_ids: list[str] = []
            self.prices: dict[str, tuple[float, str]] = dict(DEFAULT_PRICES)
            self.pricing_mode = "normal"
            self.pricing_calls: list[list[str]] = []  # endpoint ids asked for, per call (any answer)

    # -- behaviour ----------------------------------------------------------------------

    def set_prices(self, prices: dict[str, tuple[float, str]]) -> None:
        """What the pricing API lists: {endpoint: (unit_price, unit)}; others are left out of answers."""
        with self._lock:
            self.prices = dict(prices)

    def set_pricing_mode(self, mode: str) -> None:
        """normal; rising (every call answers 10% higher prices than the last); not_json, no_prices,
        bad_rows (garbage: an HTML page, JSON without a prices list, rows with nonsense values)."""
        if mode not in PRICING_MODES:
            raise ValueError(f"pricing mode must be one of {PRICING_MODES}")
        with self._lock:
            self.pricing_mode = mode

    def set_handler(self, endpoint: str, handler: Callable[[dict], Any]) -> None:
        with self._lock:
            self._handlers[endpoint.strip("/")] = handler

    def retire(self, endpoint: str) -> None:
        """fal no longer serves `endpoint`: a submit to it answers 404 Not Found (its app is gone)."""
        with self._lock:
            self._retired.add(endpoint.strip("/"))

    def set_timing(
        self,
        endpoint: str | None = None,
        *,
        queue_seconds: float = 0.0,
        run_seconds: float = 0.0,
        queue_position: int = 3,
        logs: list[str] | None = None,
        stuck_in_queue: bool = False,
    ) -> None:
        timing = Timing(queue_seconds, run_seconds, queue_position,
                        None if logs is None else list(logs), stuck_in_queue)
        with self._lock:
            self._timings[None if endpoint is None else endpoint.strip("/")] = timing

    def add_file(self, data: bytes, name: str = "output.wav", content_type: str = "audio/wav") -> str:
        path = f"/files/{uuid.uuid4().hex}/{urllib.parse.quote(name)}"
        with self._lock:
            self._files[path] = _StoredFile(bytes(data), content_type)
        return CDN_BASE_URL + path

    def audio_file(
        self, seconds: float = 1.0, rate: int = 44100, channels: int = 2, fmt: str = "wav", freq: float = 440.0
    ) -> str:
        return self.file_result(seconds=seconds, rate=rate, channels=channels, fmt=fmt, freq=freq)["audio"]["url"]

    def silence_bomb(self, hours: float = 3.0, rate: int = 44100, channels: int = 2,
                     state_length: bool = True) -> str:
        """The URL of a tiny FLAC of `hours` of silence (see :func:`encode_silent_flac`)."""
        data = encode_silent_flac(hours * 3600, rate, channels, state_length)
        return self.add_file(data, "output.flac", "audio/flac")

    def file_result(self, key: str = "audio", **audio_file_kwargs: Any) -> dict[str, Any]:
        params = {"seconds": 1.0, "rate": 44100, "channels": 2, "fmt": "wav", "freq": 440.0, **audio_file_kwargs}
        cache_key = tuple(sorted(params.items()))
        with self._lock:
            data = self._audio_cache.get(cache_key)
        if data is None:
            # Every handler-less job gets the default WAV; encode each variant only once.
            data = encode_sine(**params)
            with self._lock:
                self._audio_cache[cache_key] = data
        _, _, content_type = AUDIO_FORMATS[params["fmt"]]
        name = f"output.{params['fmt']}"
        url = self.add_file(data, name, content_type)
        return {key: {"url": url, "content_type": content_type, "file_name": name, "file_size": len(data)}}

    def model_result(self, endpoint: str, payload: dict) -> Any:
        """What the endpoint answers without a handler: its realistic model (emulator_models), else a WAV."""
        import emulator_models

        model = emulator_models.MODELS.get(endpoint.strip("/")) or emulator_models.catalog_model(endpoint.strip("/"))
        return model(self, copy.deepcopy(payload)) if model else self.file_result()

    def has_model(self, endpoint: str) -> bool:
        """Whether the endpoint answers with its own realistic model (emulator_models) when no handler is set."""
        import emulator_models

        return endpoint.strip("/") in emulator_models.MODELS or emulator_models.catalog_model(endpoint) is not None

    def file_bytes(self, url: str) -> bytes:
        """The bytes behind a URL the client sent: an uploaded (or served) file, or a data URI."""
        if url.startswith("data:"):
            import base64

            return base64.b64decode(url.split(",", 1)[1])
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        with self._lock:
            return self._files[path].data

    def fault(
        self,
        method: str,
        path_regex: str,
        *,
        status: int | None = None,
        body: Any = None,
        times: int = 1,
        close: bool = False,
        delay: float = 0.0,
        truncate: bool = False,
        headers: dict[str, str] | None = None,
        skip: int = 0,
        delay_answer: float = 0.0,
        echo_auth: bool = False,
    ) -> None:
        """Inject a fault into the next ``times`` matching requests (``times < 0``: all).

        ``skip``: the first ``skip`` matching requests pass untouched (fault the 2nd submit, ...).
        ``delay_answer``: the request is handled at once (a submit creates its job) but its answer
        is held back this many seconds. ``echo_auth``: answer ``status`` (default 400) with a body
        that echoes the Authorization header, as is and base64-encoded, like a careless server.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, body, times,
                                       close, delay, truncate, dict(headers or {}), skip, delay_answer,
                                       echo_auth))

    def remove_file(self, url: str) -> None:
        """Forget a stored file (fal's copy expired): downloads of it answer 404."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        with self._lock:
            self._files.pop(path, None)

    def queue_request_ids(self, *request_ids: str) -> None:
        """The next submits get these request ids (odd ones included) instead of a UUID."""
        with self._lock:
            self._next_request_ids.extend(request_ids)

    def job(self, request_id: str) -> Job:
        with self._lock:
            return self._jobs[request_id]

    @property
    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    # -- request handling (runs on server threads) ---------------------------------------

    def _handle(self, conn: _ProxyHandler, method: str, host: str, target: str, body: bytes) -> None:
        split = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(split.path) or "/"
        query = urllib.parse.parse_qs(split.query)
        host_path = host + path
        headers = {k.lower(): v for k, v in conn.headers.items()}
        route = self._route(method, host, path)

        with self._lock:
            self.requests.append((method, host_path))
            # "Call" records note every attempt, faulted or not.
            kind = route[0]
            if kind == "status" or kind == "stream":
                self.status_calls.append(route[2])
            elif kind == "result":
                self.result_calls.append(route[2])
            elif kind == "download":
                self.downloads.append(f"https://{host}{split.path}")
            fault = self._take_fault(method, host_path)

        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.close:
                logger.debug("fal emulator: fault drops %s %s", method, host_path)
                conn.drop()
                return
            if fault.truncate:
                response = self._download(path, headers) if kind == "download" else _json_response(
                    200, {"detail": "truncated by fal emulator fault"})
                response.headers.update(fault.headers)
                conn._send(response, truncate=True)
                return
            if fault.echo_auth:
                auth = headers.get("authorization", "")
                raw = base64.b64encode(f"Authorization: {auth}".encode()).decode()
                conn._send(_json_response(fault.status or 400, {
                    "detail": f"Could not process the request (Authorization: {auth}; raw headers {raw})",
                }, fault.headers))
                return
            if fault.status is not None:
                conn._send(self._fault_response(fault))
                return
            # A pure delay fault: fall through to normal handling.

        if kind == "stream":
            try:
                self._stream_status(conn, route[1], route[2], query, headers)
            except OSError as exc:  # the client went away mid-stream
                logger.debug("fal emulator: status stream ended: %r", exc)
                conn.close_connection = True
            return
        try:
            response = self._respond(route, method, host, path, query, headers, body)
        except Exception:  # noqa: BLE001 - a bug here must surface as a 500, not a hang
            logger.exception("fal emulator: error handling %s %s", method, host_path)
            response = _json_response(500, {"detail": "fal emulator internal error"})
        if fault is not None and fault.delay_answer:
            time.sleep(fault.delay_answer)
        conn._send(response)

    def _take_fault(self, method: str, host_path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method not in ("*", method.upper()) or not fault.pattern.search(host_path):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            if fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
            return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> _Response:
        status, body = fault.status, fault.body
        assert status is not None
        reason = http.server.BaseHTTPRequestHandler.responses.get(status, ("Error",))[0]
        if body is None and status in (502, 503, 504):
            # fal_client only retries 502-504 that look like they came from the ingress.
            response = _Response(status, NGINX_ERROR_PAGE.format(status=status, reason=reason).encode(), "text/html")
        elif body is None:
            response = _json_response(status, {"detail": reason})
        elif isinstance(body, (bytes, bytearray)):
            response = _Response(status, bytes(body), "application/octet-stream")
        elif isinstance(body, str):
            response = _Response(status, body.encode(), "text/plain; charset=utf-8")
        else:
            response = _json_response(status, body)
        response.headers.update(fault.headers)
        return response

    @staticmethod
    def _route(method: str, host: str, path: str) -> tuple[str, ...]:
        """Classify a request: (kind, *details)."""
        segments = [s for s in path.split("/") if s]
        if host in QUEUE_HOSTS:
            if method == "POST" and segments:
                return ("submit", "/".join(segments))
            if "requests" in segments:
                i = segments.index("requests")
                rest = segments[i + 1:]
                app = "/".join(segments[:i])
                if method == "GET" and len(rest) == 1:
                    return ("result", app, rest[0])
                if method == "GET" and len(rest) == 2 and rest[1] == "status":
                    return ("status", app, rest[0])
                if method == "GET" and len(rest) == 3 and rest[1:] == ["status", "stream"]:
                    return ("stream", app, rest[0])
                if method == "PUT" and len(rest) == 2 and rest[1] == "cancel":
                    return ("cancel", app, rest[0])
        elif host in RUN_HOSTS:
            if method == "POST" and segments:
                return ("run", "/".join(segments))
        elif host == REST_HOST:
            if method == "POST" and path == "/storage/auth/token":
                return ("token",)
            if method == "POST" and path == "/storage/upload/initiate":
                return ("initiate",)
        elif host == PLATFORM_HOST:
            if method == "GET" and path == "/v1/models/pricing":
                return ("pricing",)
        elif host in CDN_HOSTS:
            if method == "POST" and path == "/files/upload":
                return ("upload",)
            if method == "PUT" and len(segments) == 2 and segments[0] == "gcs-upload":
                return ("gcs_put", segments[1])
            if method == "GET" and segments[:1] == ["files"]:
                return ("download",)
        return ("unknown",)

    def _respond(
        self, route: tuple[str, ...], method: str, host: str, path: str,
        query: dict[str, list[str]], headers: dict[str, str], body: bytes,
    ) -> _Response:
        kind = route[0]
        if kind == "unknown":
            return _json_response(404, {"detail": f"Not found: {method} {host}{path}"})

        auth_error = self._auth_error(host, headers)
        if auth_error is not None:
            return auth_error

        if kind in ("submit", "run"):
            return self._submit(route[1], headers, body, sync=(kind == "run"))
        if kind in ("status", "result", "cancel"):
            with self._lock:
                job = self._jobs.get(route[2])
            if job is None or job.app_base != route[1]:
                return _json_response(404, {"detail": "Request not found"})
            rid = {"x-fal-request-id": job.request_id}
            if kind == "status":  # fal's docs: 202 while the request is queued or in progress, 200 once complete
                payload = job.status_payload(_truthy(query.get("logs")))
                return _json_response(200 if payload["status"] == "COMPLETED" else 202, payload, rid)
            if kind == "result":
                return self._result(job, rid)
            return self._cancel(job, rid)
        if kind == "token":
            expires = datetime.now(timezone.utc) + timedelta(hours=1)
            return _json_response(200, {"token": self.cdn_token, "token_type": "Bearer",
                                        "base_url": CDN_BASE_URL, "expires_at": expires.isoformat()})
        if kind == "pricing":
            return self._pricing(query)
        if kind == "initiate":
            return self._initiate_upload(body)
        if kind == "upload":
            if headers.get("authorization") != f"Bearer {self.cdn_token}":
                return _json_response(401, {"detail": "Invalid CDN token"})
            file_name = headers.get("x-fal-file-name")
            content_type = headers.get("content-type", "application/octet-stream")
            url = self._store_upload(body, content_type, file_name, file_name or "upload.bin")
            return _json_response(200, {"access_url": url})
        if kind == "gcs_put":
            with self._lock:
                pending = self._pending_gcs.pop(route[1], None)
            if pending is None:
                return _json_response(404, {"detail": "Unknown upload"})
            file_path, initiated_type = pending
            content_type = headers.get("content-type", initiated_type)
            url = CDN_BASE_URL + urllib.parse.quote(file_path)
            with self._lock:
                self._files[file_path] = _StoredFile(body, content_type)
                self.uploads.append(Upload(body, content_type, file_path.rsplit("/", 1)[1], url))
            return _Response(200)
        if kind == "download":
            return self._download(path, headers)
        raise AssertionError(f"unhandled route {route}")

    def _auth_error(self, host: str, headers: dict[str, str]) -> _Response | None:
        # fal API hosts need the API key; files and signed upload URLs do not. The
        # received header is deliberately not echoed back.
        if host in QUEUE_HOSTS or host in RUN_HOSTS or host in (REST_HOST, PLATFORM_HOST):
            if headers.get("authorization") != f"Key {self._key}":
                return _json_response(401, {"detail": "Invalid API key"})
        return None

    def _submit(self, endpoint: str, headers: dict[str, str], body: bytes, *, sync: bool) -> _Response:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return _json_response(422, {"detail": [
                {"loc": ["body"], "msg": "Input should be a valid JSON object", "type": "json_invalid"}]})

        with self._lock:
            handler = self._handlers.get(endpoint)
            timing = copy.deepcopy(self._timings.get(endpoint, self._timings[None]))
            retired, strict = endpoint in self._retired, self.strict_contracts
        if retired:
            return _json_response(404, {"detail": f"Application '{_app_base(endpoint)}' not found"})
        # fal's apps validate the input against their schema and refuse it whole, nothing run or billed.
        errors = fal_contracts.violations(endpoint, payload) if strict else None
        if errors:
            with self._lock:
                self.rejected.append(Submission(endpoint, payload, headers, ""))
            return _json_response(422, {"detail": errors})
        with self._lock:
            request_id = self._next_request_ids.pop(0) if self._next_request_ids else str(uuid.uuid4())
        job = Job(request_id, endpoint, _app_base(endpoint), payload, headers, timing)
        # The handler runs now (not when the job "completes") so tests can inspect
        # payloads right after submit; the result is only revealed once COMPLETED.
        try:
            job.result = handler(copy.deepcopy(payload)) if handler else self.model_result(endpoint, payload)
        except EmulatedError as exc:
            job.error = exc
        except Exception as exc:  # noqa: BLE001 - a crashing handler is a failed job
            logger.exception("fal emulator: handler for %s raised", endpoint)
            job.error = EmulatedError(500, {"detail": f"{type(exc).__name__}: {exc}"})
        with self._lock:
            self._jobs[request_id] = job
            self.submissions.append(Submission(endpoint, payload, headers, request_id))

        rid = {"x-fal-request-id": request_id}
        if sync:
            return self._result_body(job, rid)
        queued = timing.stuck_in_queue or timing.queue_seconds > 0
        return _json_response(200, {
            "status": "IN_QUEUE",  # fal's inference API docs: the submit answer has the status IN_QUEUE
            "request_id": request_id,
            "response_url": job.response_url,
            "status_url": job.response_url + "/status",
            "cancel_url": job.response_url + "/cancel",
            "queue_position": timing.queue_position if queued else 0,
        }, rid)

    @staticmethod
    def _result_body(job: Job, rid: dict[str, str]) -> _Response:
        if job.error is not None:
            body = job.error.body
            if isinstance(body, str):
                return _Response(job.error.status, body.encode(), "text/plain; charset=utf-8", rid)
            return _json_response(job.error.status, body, rid)
        return _json_response(200, job.result, rid)

    def _result(self, job: Job, rid: dict[str, str]) -> _Response:
        state = job.state
        if state == "CANCELLED":
            return _json_response(400, {"detail": "Request was cancelled"}, rid)
        if state != "COMPLETED":
            return _json_response(400, {"detail": "Request is still in progress"}, rid)
        return self._result_body(job, rid)

    def _cancel(self, job: Job, rid: dict[str, str]) -> _Response:
        with self._lock:
            self.cancels.append(job.request_id)
            if job.state in ("COMPLETED", "CANCELLED"):
                return _json_response(400, {"status": "ALREADY_COMPLETED"}, rid)
            job.cancelled = True
        return _json_response(202, {"status": "CANCELLATION_REQUESTED"}, rid)

    def _pricing(self, query: dict[str, list[str]]) -> _Response:
        ids = [i for value in query.get("endpoint_id", []) for i in value.split(",") if i]
        with self._lock:
            self.pricing_calls.append(ids)
            mode, calls = self.pricing_mode, len(self.pricing_calls)
            prices = dict(self.prices)
        if not 1 <= len(ids) <= 50:
            return _json_response(422, {"detail": [{"loc": ["query", "endpoint_id"],
                                                    "msg": "give 1 to 50 endpoint ids", "type": "value_error"}]})
        if mode == "not_json":
            return _Response(200, b"<html><body>Service temporarily unavailable</body></html>", "text/html")
        if mode == "no_prices":
            return _json_response(200, {"data": "maintenance", "prices": None})
        rows = []
        for endpoint in ids:
            if endpoint not in prices:
                continue
            unit_price, unit = prices[endpoint]
            if mode == "rising":
                unit_price = round(unit_price * 1.1 ** calls, 10)
            rows.append({"endpoint_id": endpoint, "unit_price": unit_price, "unit": unit, "currency": "USD"})
        if mode == "bad_rows":
            rows = [{"endpoint_id": r["endpoint_id"], "unit_price": "cheap", "unit": 7, "currency": "USD"} for r in rows]
        start = int((query.get("cursor") or ["0"])[-1] or 0)
        page = rows[start:start + PRICING_PAGE]
        more = start + PRICING_PAGE < len(rows)
        return _json_response(200, {"prices": page, "next_cursor": str(start + PRICING_PAGE) if more else None,
                                     "has_more": more})

    def _initiate_upload(self, body: bytes) -> _Response:
        try:
            info = json.loads(body or b"{}")
        except ValueError:
            info = None
        if not isinstance(info, dict):
            return _json_response(422, {"detail": "Invalid JSON"})
        file_name = str(info.get("file_name") or "upload.bin")
        content_type = str(info.get("content_type") or "application/octet-stream")
        upload_id = uuid.uuid4().hex
        file_path = f"/files/{upload_id}/{file_name}"
        with self._lock:
            self._pending_gcs[upload_id] = (file_path, content_type)
        return _json_response(200, {
            "upload_url": f"{CDN_BASE_URL}/gcs-upload/{upload_id}",
            "file_url": CDN_BASE_URL + urllib.parse.quote(file_path),
        })

    def _store_upload(self, data: bytes, content_type: str, file_name: str | None, url_name: str) -> str:
        url = self.add_file(data, url_name, content_type)
        with self._lock:
            self.uploads.append(Upload(data, content_type, file_name, url))
        return url

    def _download(self, path: str, headers: dict[str, str]) -> _Response:
        with self._lock:
            stored = self._files.get(path)
        if stored is None:
            return _json_response(404, {"detail": "File not found"})
        data = stored.data
        extra = {"Accept-Ranges": "bytes"}
        range_header = headers.get("range")
        if range_header:
            match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", range_header)
            start = int(match.group(1)) if match else len(data)
            end = min(int(match.group(2)), len(data) - 1) if match and match.group(2) else len(data) - 1
            if start >= len(data) or start > end:
                return _Response(416, b"", stored.content_type, {"Content-Range": f"bytes */{len(data)}"})
            extra["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return _Response(206, data[start:end + 1], stored.content_type, extra)
        return _Response(200, data, stored.content_type, extra)

    def _stream_status(
        self, conn: _ProxyHandler, app: str, request_id: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> None:
        auth_error = self._auth_error(conn.tunnel_host or "", headers)
        if auth_error is not None:
            conn._send(auth_error)
            return
        with self._lock:
            job = self._jobs.get(request_id)
        if job is None or job.app_base != app:
            conn._send(_json_response(404, {"detail": "Request not found"}))
            return
        with_logs = _truthy(query.get("logs"))
        # No Content-Length for an open-ended event stream: the body ends when we close.
        conn.send_response(200)
        conn.send_header("Content-Type", "text/event-stream")
        conn.send_header("Cache-Control", "no-cache")
        conn.send_header("x-fal-request-id", request_id)
        conn.send_header("Connection", "close")
        conn.end_headers()
        conn.close_connection = True
        last: str | None = None
        last_write = time.monotonic()
        while not self._stopping.is_set():
            payload = job.status_payload(with_logs)
            encoded = json.dumps(payload)
            now = time.monotonic()
            if encoded != last:
                conn.wfile.write(f"data: {encoded}\n\n".encode())
                last, last_write = encoded, now
                if payload["status"] == "COMPLETED":
                    break
            elif now - last_write > SSE_KEEPALIVE_SECONDS:
                # Comment line: ignored by SSE parsers, but detects a departed client so a
                # stuck job doesn't pin this thread forever.
                conn.wfile.write(b": keep-alive\n\n")
                last_write = now
            # Wake when the job's state is due to change (as fal pushes an event the moment it happens),
            # and at least every SSE_POLL_SECONDS for what no clock tells (a cancel, changed timing).
            time.sleep(min(SSE_POLL_SECONDS, job.next_change()))
        conn.wfile.flush()


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")
