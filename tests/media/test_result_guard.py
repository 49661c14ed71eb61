"""Issue 18, cases 6 and 7: result files from outside fal's own file hosts (the any-endpoint node
can return any URL) follow Load Audio from URL's rules (public addresses only, checked for every
hop and pinned at connect time, a size cap, no inflating compression), and only files from fal's
own hosts, still as fal returned them, are passed on by fal's URL.

There is no DNS in the test sandbox: the guard's resolver is told what names resolve to.
"""

import http.server
import threading
import zlib

import pytest

from fal_emulator import encode_sine
from support import defaults, fake_dns, pack_module, run_node
from test_compressed_answers import zeros_compressed

ALLOW = "FAL_AUDIO_ALLOW_PRIVATE_URLS"
ENDPOINT = "someone/app"
PAID = ("The request is paid for and stays in the journal: running the node again with the same inputs tries again "
        "at no new charge (for example once the file's server allows it); a new seed pays for a new take.")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def outside():
    """A plain HTTP server on 127.0.0.1, a file host outside fal. Set .status, .body, .headers; .hits
    records (path, Accept-Encoding) of each request."""
    state = type("Outside", (), {})()
    state.status, state.headers, state.hits = 200, {}, []
    state.body = encode_sine(seconds=0.25, rate=8000, channels=1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            state.hits.append((self.path, self.headers.get("Accept-Encoding")))
            self.send_response(state.status)
            headers = {"Content-Type": "audio/wav", "Content-Length": str(len(state.body)), **state.headers}
            for name, value in headers.items():
                if value is not None:
                    self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(state.body)
            except OSError:
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.port = server.server_address[1]
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def dns(fal, monkeypatch):
    """The guard on, no proxy for plain http, and a resolver that answers from `answers` (a list, or a
    function giving one) before the real one."""
    monkeypatch.delenv(ALLOW, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return fake_dns(monkeypatch, {})


def any_endpoint(nodes, fal, url, seed=1):
    """The any-endpoint node on a model whose response names `url` as its audio file."""
    fal.set_handler(ENDPOINT, lambda p: {"audio": {"url": url, "content_type": "audio/wav"}})
    node = nodes["FalAudioAnyEndpoint"]
    return run_node(node, **defaults(node, endpoint=ENDPOINT, arguments=f'{{"seed": {seed}}}'))


def refused(nodes, fal, url, seed=1):
    with pytest.raises(Exception) as caught:
        any_endpoint(nodes, fal, url, seed)
    return str(caught.value)


def kept_files(comfy):
    return sorted(p.name for p in comfy.output_dir.rglob("*") if p.is_file()) if comfy.output_dir.exists() else []


# -- case 6: the address rules ---------------------------------------------------------------------------------

def test_a_result_on_a_loopback_address_is_refused(fal, nodes, dns, outside, comfy):
    url = f"http://127.0.0.1:{outside.port}/a.wav?token=s3cret"
    message = refused(nodes, fal, url)
    request_id = fal.submissions[0].request_id
    assert message == (f"{ENDPOINT}: the result of request {request_id} cannot be kept: its file is at "
                       f"http://127.0.0.1:{outside.port}/a.wav?…, and 127.0.0.1 resolves to 127.0.0.1, a loopback "
                       f"address: result files from outside fal's file hosts are fetched only from public addresses "
                       f"(whoever runs the server can allow private ones with {ALLOW}=1). {PAID}")
    assert outside.hits == [] and "s3cret" not in message


def test_a_refused_result_is_fetched_without_a_new_charge_once_allowed(fal, nodes, dns, outside, monkeypatch):
    url = f"http://127.0.0.1:{outside.port}/a.wav"
    assert PAID in refused(nodes, fal, url)
    monkeypatch.setenv(ALLOW, "1")  # the operator allows it: the same inputs pick up the paid request
    (audio, _) = any_endpoint(nodes, fal, url)
    assert tuple(audio["waveform"].shape) == (1, 1, 2000)
    assert len(fal.submissions) == 1


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(fal, nodes, dns, outside):
    dns["cdn.example"] = ["127.0.0.1"]
    message = refused(nodes, fal, f"http://cdn.example:{outside.port}/a.wav")
    assert f"its file is at http://cdn.example:{outside.port}/a.wav, and cdn.example resolves to 127.0.0.1, " \
           "a loopback address" in message
    assert outside.hits == []


def test_a_name_that_rebinds_to_loopback_at_connect_time_is_refused(fal, nodes, dns, outside):
    calls = []

    def rebinding():  # public when the request is checked, loopback when connected to
        calls.append(1)
        return ["151.101.1.91"] if len(calls) == 1 else ["127.0.0.1"]

    dns["rebind.example"] = rebinding
    message = refused(nodes, fal, f"http://rebind.example:{outside.port}/a.wav")
    assert "rebind.example resolves to 127.0.0.1, a loopback address: result files from outside fal's" in message
    assert outside.hits == [] and len(calls) == 2


def test_an_ipv6_form_of_a_metadata_address_is_refused(fal, nodes, dns, outside):
    dns["nat64.example"] = ["64:ff9b::a9fe:a9fe"]
    message = refused(nodes, fal, f"http://nat64.example:{outside.port}/latest/meta-data/")
    assert "nat64.example resolves to 64:ff9b::a9fe:a9fe, a NAT64 address of 169.254.169.254, a cloud metadata " \
           "address" in message


def test_a_redirect_hop_to_a_private_address_is_refused(fal, nodes, dns, outside, monkeypatch):
    """The first hop is allowed (private addresses allowed for it alone, as an operator's mirror would be),
    the redirect it answers leads into the private network and is never requested."""
    netguard = pack_module("media.netguard")
    plain = netguard.refusal
    monkeypatch.setattr(netguard, "refusal", lambda a: None if str(a) == "127.0.0.1" else plain(a))
    outside.status, outside.headers, outside.body = 302, {"Location": "http://10.1.2.3/secret.wav"}, b""
    message = refused(nodes, fal, f"http://127.0.0.1:{outside.port}/moved.wav")
    assert f"its file is at http://127.0.0.1:{outside.port}/moved.wav, which redirects to " \
           "http://10.1.2.3/secret.wav, and 10.1.2.3 resolves to 10.1.2.3, a private network address" in message
    assert [path for path, _ in outside.hits] == ["/moved.wav"]


def test_the_operator_can_allow_private_addresses(fal, nodes, dns, outside, monkeypatch):
    monkeypatch.setenv(ALLOW, "1")
    (audio, _) = any_endpoint(nodes, fal, f"http://127.0.0.1:{outside.port}/a.wav")
    assert tuple(audio["waveform"].shape) == (1, 1, 2000)
    assert outside.hits == [("/a.wav", "identity")]  # asked for uncompressed
    assert "fal_origin" not in audio  # not a fal file: passed on by upload


# -- case 6: the size cap and compressed answers ----------------------------------------------------------------

def test_a_declared_size_over_the_cap_is_refused_before_downloading(fal, nodes, dns, outside, monkeypatch, comfy):
    monkeypatch.setenv(ALLOW, "1")
    outside.headers = {"Content-Length": str(600_000_000)}
    outside.body = b""
    message = refused(nodes, fal, f"http://127.0.0.1:{outside.port}/big.wav")
    assert f"cannot be kept: http://127.0.0.1:{outside.port}/big.wav is 600 MB, more than the 500 MB taken from " \
           f"outside fal's file hosts. {PAID}" in message
    assert kept_files(comfy) == []


def test_an_undeclared_size_is_stopped_at_the_cap(fal, nodes, dns, outside, monkeypatch, comfy):
    monkeypatch.setenv(ALLOW, "1")
    monkeypatch.setattr(pack_module("transport.gateway"), "OUTSIDE_MAX_BYTES", 100_000)
    outside.headers = {"Content-Length": None}  # no length: read until the connection closes
    outside.body = encode_sine(seconds=10.0, rate=8000, channels=1)  # 160 KB
    message = refused(nodes, fal, f"http://127.0.0.1:{outside.port}/long.wav")
    assert f"http://127.0.0.1:{outside.port}/long.wav is larger than the 0.1 MB taken from outside fal's file hosts; " \
           "the download was stopped" in message
    assert kept_files(comfy) == []  # no partial file left behind either


def test_a_gzip_bomb_is_stopped_at_the_cap(fal, nodes, dns, outside, monkeypatch, comfy):
    monkeypatch.setenv(ALLOW, "1")
    monkeypatch.setattr(pack_module("transport.gateway"), "OUTSIDE_MAX_BYTES", 1_000_000)
    outside.headers, outside.body = {"Content-Encoding": "gzip"}, zeros_compressed("gzip", 64 << 20)
    message = refused(nodes, fal, f"http://127.0.0.1:{outside.port}/bomb.wav")
    assert "bomb.wav is larger than the 1 MB taken from outside fal's file hosts; the download was stopped" in message
    assert outside.hits == [("/bomb.wav", "identity")] and kept_files(comfy) == []


def test_a_compressed_answer_is_decoded(fal, nodes, dns, outside, monkeypatch):
    monkeypatch.setenv(ALLOW, "1")
    wav = encode_sine(seconds=0.5, rate=8000, channels=1)
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    outside.headers, outside.body = {"Content-Encoding": "gzip"}, packer.compress(wav) + packer.flush()
    (audio, _) = any_endpoint(nodes, fal, f"http://127.0.0.1:{outside.port}/a.wav")
    assert tuple(audio["waveform"].shape) == (1, 1, 4000)


def test_fal_file_hosts_are_trusted_as_before(fal, nodes, dns):
    """fal's own hosts are not held to the guard (streamed decode, resume unchanged): even an address the
    guard would refuse is fetched for them."""
    dns["v3.fal.media"] = ["10.0.0.1"]
    (audio, _) = any_endpoint(nodes, fal, fal.audio_file(seconds=0.5, rate=8000, channels=1))
    assert tuple(audio["waveform"].shape) == (1, 1, 4000) and audio["fal_origin"][0]["url"].startswith("https://v3.")


@pytest.mark.parametrize("url,trusted", [
    ("https://v3.fal.media/files/rabbit/a.wav", True),
    ("https://fal.media/files/a.wav", True),
    ("https://v3b.fal.media/files/a.wav", True),
    ("https://V2.FAL.MEDIA./files/a.wav", True),
    ("https://storage.googleapis.com/falserverless/model_tests/a.wav", True),
    ("https://storage.googleapis.com/someone-else/a.wav", False),
    ("https://storage.googleapis.com/falserverless%2f..%2fother/a.wav", False),
    ("http://v3.fal.media/files/a.wav", False),  # not over https
    ("https://evilfal.media/a.wav", False),
    ("https://fal.media.evil.example/a.wav", False),
    ("https://v3.fal.media@evil.example/a.wav", False),
    ("https://example.com/a.wav", False),
    ("data:audio/wav;base64,AAAA", False),
])
def test_which_urls_are_fals_own_files(url, trusted):
    assert pack_module("media.netguard").fal_file(url) is trusted


# -- case 7: only fal's own files, unchanged, chain by URL -------------------------------------------------------

def test_a_file_from_another_https_host_carries_no_origin(tmp_path):
    reuse, audio = pack_module("media.reuse"), pack_module("media.audio")
    path = tmp_path / "result.wav"
    path.write_bytes(encode_sine(seconds=0.25, rate=8000, channels=1))
    reuse.returned(path, "https://cdn.example/result.wav")
    assert "fal_origin" not in reuse.decode(audio.decode, path, "https://cdn.example/result.wav")
    reuse.returned(path, "https://v3.fal.media/files/result.wav")
    (entry,) = reuse.decode(audio.decode, path, "https://v3.fal.media/files/result.wav")["fal_origin"]
    assert entry["url"] == "https://v3.fal.media/files/result.wav"


def lyria(nodes, seed=7):
    node = nodes["FalAudioLyria2"]
    return run_node(node, **defaults(node, prompt="kept", seed=seed))[0]


def inpaint(nodes, audio, seed=0):
    node = nodes["FalAudioAceStepInpaint"]
    return run_node(node, **defaults(node, tags="lofi", start_time=0.1, end_time=0.2, seed=seed), audio=audio)[0]


def test_an_edited_kept_file_is_passed_on_by_upload_not_by_fals_url(fal, nodes, comfy):
    import torch

    fal.set_handler("fal-ai/lyria2", lambda p: fal.file_result(seconds=1.0, rate=8000, channels=1))
    fal.set_handler("fal-ai/ace-step/audio-inpaint", lambda p: {
        **fal.file_result(seconds=1.0, rate=8000, channels=1), "seed": 0, "tags": "", "lyrics": ""})
    first = lyria(nodes)
    inpaint(nodes, first, seed=1)
    by_url = fal.submissions[-1].payload["audio_url"]
    assert fal.uploads == [] and by_url == first["fal_origin"][0]["url"]
    # The user edits the kept file (a new mix saved over it); the next run reuses it from the journal.
    kept = first["fal_origin"][0]["path"]
    edited = encode_sine(seconds=1.0, rate=8000, channels=1, freq=660.0)
    with open(kept, "wb") as file:
        file.write(edited)
    again = lyria(nodes)
    assert len([s for s in fal.submissions if s.endpoint == "fal-ai/lyria2"]) == 1  # reused, not paid again
    inpaint(nodes, again, seed=2)
    sent = fal.submissions[-1].payload["audio_url"]
    assert sent != by_url and [u.url for u in fal.uploads] == [sent]
    assert fal.uploads[0].data == edited  # the kept file as it is now, not fal's copy
    back = pack_module("media.audio").decode(fal.uploads[0].data)["waveform"]
    assert torch.equal(back, again["waveform"])


def _peak() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def test_a_gigabyte_gzip_bomb_never_inflates_memory(fal, nodes, dns, outside, monkeypatch, comfy):
    """The same bomb as Load Audio from URL's (1 GiB of zeros), as a result file: the peak resident memory
    of this process (reset first: Linux's clear_refs) rises by well under 100 MB."""
    monkeypatch.setenv(ALLOW, "1")
    monkeypatch.setattr(pack_module("transport.gateway"), "OUTSIDE_MAX_BYTES", 20_000_000)
    outside.headers, outside.body = {"Content-Encoding": "gzip"}, zeros_compressed("gzip")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) starts again from what is resident now
    before = _peak()
    message = refused(nodes, fal, f"http://127.0.0.1:{outside.port}/bomb.wav")
    assert _peak() - before < 100e6, f"peak memory rose by {(_peak() - before) / 1e6:.0f} MB"
    assert "bomb.wav is larger than the 20 MB taken from outside fal's file hosts; the download was stopped" in message
