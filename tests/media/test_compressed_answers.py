"""Issue 18, case 10: a compressed answer cannot inflate memory past the cap.

Load Audio from URL (and result files from outside fal's file hosts) ask for the file as is
(Accept-Encoding: identity); a server that compresses anyway is decoded in small pieces and
the cap counts the decoded bytes, so a gzip bomb (1 GiB of zeros in 1 MB) is stopped at the
cap without ever holding a large decompressed buffer. The memory test runs the node in a
fresh process and reads its peak resident memory (VmHWM) before and after.
"""

import http.server
import json
import subprocess
import sys
import threading
import zlib

import pytest

from fal_emulator import encode_sine
from support import PACK_DIR, run_node

NAME = "Load Audio from URL (fal Audio)"
ALLOW = "FAL_AUDIO_ALLOW_PRIVATE_URLS"
GIB = 1 << 30


def zeros_compressed(encoding: str, size: int = GIB) -> bytes:
    """`size` zero bytes, gzip- or zlib-(deflate-)compressed, built from one independent 1 MiB block
    repeated (a full flush makes each block stand alone): ~1 MB, in a fraction of a second."""
    block, gzip = 1 << 20, encoding == "gzip"
    zero = bytes(block)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, wrapped below
    body = packer.compress(zero) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush(zlib.Z_FINISH)
    check, value = (zlib.crc32, 0) if gzip else (zlib.adler32, 1)
    for _ in range(size // block):
        value = check(zero, value)
    if gzip:
        head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        trailer = value.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
    else:
        head, trailer = b"\x78\xda", value.to_bytes(4, "big")
    return head + body * (size // block) + tail + trailer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def compressing_server():
    """A plain HTTP server on 127.0.0.1 that answers compressed whatever it is asked.
    Set .body and .encoding; .seen collects each request's Accept-Encoding."""
    state = type("State", (), {"body": b"", "encoding": "gzip", "seen": []})()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.seen.append(self.headers.get("Accept-Encoding"))
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Encoding", state.encoding)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            try:
                self.wfile.write(state.body)
            except OSError:  # the client stopped reading at its cap
                pass

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/song.wav"
    yield state
    server.shutdown()
    server.server_close()


def test_the_bomb_builder_builds_what_it_says():
    for encoding in ("gzip", "deflate"):
        small = zeros_compressed(encoding, 8 << 20)
        assert zlib.decompress(small, 31 if encoding == "gzip" else 15) == bytes(8 << 20)


_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from support import load_pack, run_node
node = load_pack().NODE_CLASS_MAPPINGS["FalAudioLoadURL"]
import httpx, av, numpy  # loaded before measuring: what every fetch needs anyway

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

before = peak()
try:
    run_node(node, url=sys.argv[2], max_megabytes=float(sys.argv[3]))
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"rise": peak() - before, "error": error}))
"""


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_bomb_stops_at_the_cap_without_inflating_memory(compressing_server, monkeypatch, encoding):
    compressing_server.encoding = encoding
    compressing_server.body = zeros_compressed(encoding)
    monkeypatch.setenv(ALLOW, "1")  # the server is on 127.0.0.1
    child = subprocess.run([sys.executable, "-c", _CHILD, str(PACK_DIR / "tests"), compressing_server.url, "10"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcome["rise"] < 100e6, f"peak memory rose by {outcome['rise'] / 1e6:.0f} MB"
    host = compressing_server.url.split("/")[2]
    assert outcome["error"] == (f"FetchFailed: {NAME}: http://{host}/song.wav is larger than max_megabytes (10 MB); "
                                "the download was stopped. Raise 'max_megabytes' to allow it.")
    assert compressing_server.seen == ["identity"]


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate"])
def test_a_compressed_answer_is_still_loaded(compressing_server, monkeypatch, nodes, encoding):
    wav = encode_sine(seconds=0.25, rate=8000, channels=1)
    wbits = {"gzip": 31, "x-gzip": 31, "deflate": 15}[encoding]
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    compressing_server.encoding, compressing_server.body = encoding, packer.compress(wav) + packer.flush()
    monkeypatch.setenv(ALLOW, "1")
    audio = run_node(nodes["FalAudioLoadURL"], url=compressing_server.url, max_megabytes=1.0)[0]
    assert tuple(audio["waveform"].shape) == (1, 1, 2000) and compressing_server.seen == ["identity"]


def test_a_compression_the_pack_does_not_decode_is_refused_by_name(compressing_server, monkeypatch, nodes):
    compressing_server.encoding, compressing_server.body = "br", b"\x0b\x02\x80hello\x03"
    monkeypatch.setenv(ALLOW, "1")
    with pytest.raises(Exception) as caught:
        run_node(nodes["FalAudioLoadURL"], url=compressing_server.url, max_megabytes=1.0)
    host = compressing_server.url.split("/")[2]
    assert str(caught.value) == (f"{NAME}: http://{host}/song.wav answered compressed with 'br' although the file "
                                 "was asked for uncompressed; the pack decodes only gzip and deflate.")
