"""Issue 12, cases 11 and 9 (Load Audio from URL): only public addresses are fetched (after DNS
resolution, on every redirect hop and at connect time) unless FAL_AUDIO_ALLOW_PRIVATE_URLS=1; URLs
with an invalid port, a bad internationalized host or an overlong length are refused before any
request; data: URIs are read whatever the case of "data:" and ";base64".

There is no DNS in the test sandbox: where a public host is needed, the guard's resolver is told
what the emulator's file host resolves to (a public address), as a DNS server would.
"""

import base64
import http.server
import threading

import pytest

from fal_emulator import encode_sine
from support import fake_dns, pack_module, run_node

NAME = "Load Audio from URL (fal Audio)"
ALLOW = "FAL_AUDIO_ALLOW_PRIVATE_URLS"
HINT = "whoever runs the server can allow private addresses with FAL_AUDIO_ALLOW_PRIVATE_URLS=1."


@pytest.fixture
def guarded(fal, monkeypatch):
    """The emulator, with the network rules on and DNS answering for fal's file host."""
    monkeypatch.delenv(ALLOW, raising=False)
    fal.answers = fake_dns(monkeypatch, {"v3.fal.media": ["151.101.1.91"], "fal.media": ["151.101.65.91"]})
    return fal


def load(nodes, url, max_megabytes=10.0):
    return run_node(nodes["FalAudioLoadURL"], url=url, max_megabytes=max_megabytes)[0]


def refused(fal, nodes, url):
    with pytest.raises(Exception) as caught:
        load(nodes, url)
    return str(caught.value)


@pytest.mark.parametrize("url,address,reason", [
    ("http://127.0.0.1:8188/api/queue", "127.0.0.1", "a loopback address"),
    ("http://localhost:8188/view?filename=a.wav", "127.0.0.1", "a loopback address"),
    ("http://[::1]:8188/", "::1", "a loopback address"),
    ("http://[::ffff:127.0.0.1]/a.wav", "::ffff:127.0.0.1", "a loopback address"),
    ("http://2130706433/a.wav", "127.0.0.1", "a loopback address"),
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "169.254.169.254",
     "a cloud metadata address"),
    ("http://100.100.100.200/latest/meta-data/", "100.100.100.200", "a cloud metadata address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254", "a cloud metadata address"),
    ("http://10.0.0.1/song.wav", "10.0.0.1", "a private network address"),
    ("https://192.168.1.1/song.wav", "192.168.1.1", "a private network address"),
    ("http://172.16.5.4:9000/song.wav", "172.16.5.4", "a private network address"),
    ("http://[fe80::1]/song.wav", "fe80::1", "a link-local address"),
    ("http://169.254.10.10/song.wav", "169.254.10.10", "a link-local address"),
    ("http://0.0.0.0:8188/", "0.0.0.0", "an unspecified address (this machine)"),
    ("http://[fc00::5]/song.wav", "fc00::5", "a private network address"),
])
def test_private_loopback_link_local_and_metadata_addresses_are_refused(guarded, nodes, url, address, reason):
    message = refused(guarded, nodes, url)
    assert f"resolves to {address}, {reason}. Load Audio from URL fetches only public addresses" in message, message
    assert message.startswith(f"{NAME}: ") and message.endswith(HINT)
    assert guarded.requests == []


def test_a_public_host_is_fetched(guarded, nodes):
    audio = load(nodes, guarded.audio_file(seconds=0.5, channels=1))
    assert audio["waveform"].shape[:2] == (1, 1) and len(guarded.downloads) == 1


def test_a_name_that_resolves_to_a_private_address_is_refused_after_dns(guarded, nodes):
    guarded.answers["v3.fal.media"] = ["151.101.1.91", "10.20.30.40"]  # one private address is enough
    message = refused(guarded, nodes, guarded.audio_file(seconds=0.5))
    assert "v3.fal.media resolves to 10.20.30.40, a private network address" in message
    assert guarded.downloads == []


@pytest.mark.parametrize("target,address,reason", [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a cloud metadata address"),
    ("http://127.0.0.1:8188/api/history", "127.0.0.1", "a loopback address"),
])
def test_every_redirect_hop_is_checked(guarded, nodes, target, address, reason):
    guarded.fault("GET", r"v3\.fal\.media/files/moved/song\.wav$", status=302, body=b"", headers={"Location": target})
    message = refused(guarded, nodes, "https://v3.fal.media/files/moved/song.wav")
    assert message.startswith(f"{NAME}: https://v3.fal.media/files/moved/song.wav redirects to ")
    assert f"and {address} resolves to {address}, {reason}" in message and message.endswith(HINT)
    assert guarded.requests == [("GET", "v3.fal.media/files/moved/song.wav")]  # the hop itself never went out


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def local_wav_server():
    """A plain HTTP server on 127.0.0.1 serving a WAV (as something on the server's own network would)."""
    wav = encode_sine(seconds=0.25, rate=8000, channels=1)
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(wav)))
            self.end_headers()
            self.wfile.write(wav)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


def test_a_name_that_rebinds_to_loopback_at_connect_time_is_refused(guarded, nodes, monkeypatch, local_wav_server):
    port, hits = local_wav_server
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    calls = []

    def rebinding():  # public when checked, loopback when connected to
        calls.append(1)
        return ["151.101.1.91"] if len(calls) == 1 else ["127.0.0.1"]

    guarded.answers["rebind.example"] = rebinding
    message = refused(guarded, nodes, f"http://rebind.example:{port}/a.wav")
    assert "rebind.example resolves to 127.0.0.1, a loopback address" in message and hits == []


def test_the_operator_can_allow_private_addresses(guarded, nodes, monkeypatch, local_wav_server):
    port, hits = local_wav_server
    url = f"http://127.0.0.1:{port}/a.wav"
    assert "a loopback address" in refused(guarded, nodes, url) and hits == []
    monkeypatch.setenv(ALLOW, "1")
    assert load(nodes, url)["waveform"].shape == (1, 1, 2000) and hits == ["/a.wav"]


# -- case 9: URLs refused before any request ------------------------------------------------------------------

@pytest.mark.parametrize("url,rule", [
    ("https://v3.fal.media:99999/files/a.wav", "'url' has an invalid port ('99999'); a port is a number from 1 to 65535"),
    ("https://v3.fal.media:0/files/a.wav", "'url' has an invalid port ('0')"),
    ("https://v3.fal.media:8o8o/files/a.wav", "'url' has an invalid port ('8o8o')"),
    ("https://xn--zz.com/a.wav", "'url' has a host name that is not a valid (internationalized) domain name"),
    ("https://exämple..com/a.wav", "'url' has a host name that is not a valid (internationalized) domain name"),
    ("https://exa mple.com/a.wav", "'url' has a host name that is not a valid (internationalized) domain name"),
    ("https://[12345::1]/a.wav", "'url' is not a valid URL ("),
    ("https://[::1%zz/a.wav", "'url' is not a valid URL"),
    ("https:///a.wav", "'url' has no host name"),
    ("https://v3.fal.media/" + "a" * 9000 + ".wav", "'url' is 9,025 characters long; an http(s) URL may be at most "
                                                   "8,192"),
])
def test_malformed_urls_are_refused_naming_the_field(fal, nodes, url, rule):
    message = refused(fal, nodes, url)
    assert message.startswith(f"{NAME}: {rule}"), message
    assert message.endswith("Nothing was sent to fal.") and fal.requests == []


def test_an_internationalized_host_is_fine(guarded, nodes):
    message = refused(guarded, nodes, "https://bücher.example/a.wav")
    assert "bücher.example could not be resolved" in message or "xn--bcher-kva.example" in message
    assert "not a valid" not in message


@pytest.mark.parametrize("prefix", ["DATA:audio/wav;BASE64,", "Data:audio/wav;Base64,", "data:AUDIO/WAV;base64,"])
def test_data_uris_are_read_whatever_the_case(nodes, prefix):
    wav = encode_sine(seconds=0.25, rate=16000, channels=1)
    audio = load(nodes, prefix + base64.b64encode(wav).decode())
    assert audio["sample_rate"] == 16000 and tuple(audio["waveform"].shape) == (1, 1, 4000)


def test_an_upper_case_data_uri_that_is_a_page_is_refused(nodes):
    with pytest.raises(Exception) as caught:
        load(nodes, "DATA:TEXT/HTML;BASE64," + base64.b64encode(b"<html></html>").decode())
    assert str(caught.value) == f"{NAME}: the URL is a data: URI (text/html), not audio."


# -- issue 18, case 8: IPv6 forms that embed an IPv4 address are judged by the address they reach -------------

@pytest.mark.parametrize("address,reason", [
    # NAT64, well-known prefix (RFC 6052): the IPv4 address is the last 32 bits.
    ("64:ff9b::7f00:1", "a NAT64 address of 127.0.0.1, a loopback address"),
    ("64:ff9b::a9fe:a9fe", "a NAT64 address of 169.254.169.254, a cloud metadata address"),
    ("64:ff9b::c0a8:101", "a NAT64 address of 192.168.1.1, a private network address"),
    ("64:ff9b::808:808", None),  # DNS64 on an IPv6-only network: a public IPv4 host
    # NAT64, local-use prefix (RFC 8215): where the IPv4 address sits is the operator's choice.
    ("64:ff9b:1::a00:1", "a local-use NAT64 address, whose IPv4 address cannot be told"),
    ("64:ff9b:1:ffff::808:808", "a local-use NAT64 address, whose IPv4 address cannot be told"),
    # 6to4: bits 16-48.
    ("2002:7f00:1::1", "a 6to4 address of 127.0.0.1, a loopback address"),
    ("2002:a00:1::", "a 6to4 address of 10.0.0.1, a private network address"),
    ("2002:a9fe:a9fe::1", "a 6to4 address of 169.254.169.254, a cloud metadata address"),
    ("2002:808:808::1", None),
    # IPv4-compatible (deprecated ::/96) and IPv4-translated (::ffff:0:0:0/96).
    ("::127.0.0.1", "an IPv4-compatible address of 127.0.0.1, a loopback address"),
    ("::10.1.2.3", "an IPv4-compatible address of 10.1.2.3, a private network address"),
    ("::8.8.8.8", None),
    ("::ffff:0:7f00:1", "an IPv4-translated address of 127.0.0.1, a loopback address"),
    ("::ffff:0:a9fe:a9fe", "an IPv4-translated address of 169.254.169.254, a cloud metadata address"),
    # IPv4-mapped: the IPv4 address itself.
    ("::ffff:127.0.0.1", "a loopback address"),
    ("::ffff:169.254.169.254", "a cloud metadata address"),
    ("::ffff:8.8.8.8", None),
    # Site-local (deprecated, still routed inside some networks).
    ("fec0::1", "a site-local address"),
    ("feff:ffff::1", "a site-local address"),
    # Teredo: the client address is stored inverted; refused whatever it reaches.
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "a Teredo address of 127.0.0.1, a loopback address"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a Teredo address of 10.0.0.1, a private network address"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "a Teredo tunnel address"),
    # ISATAP: the interface identifier 0:5efe (or 200:5efe) + the IPv4 address, behind any prefix.
    ("2600::5efe:7f00:1", "an ISATAP address of 127.0.0.1, a loopback address"),
    ("2600::200:5efe:a00:1", "an ISATAP address of 10.0.0.1, a private network address"),
    ("2600::5efe:808:808", None),
    # Plain IPv6, for contrast.
    ("2606:4700::6810:85e5", None),
    ("::1", "a loopback address"),
    ("::", "an unspecified address (this machine)"),
])
def test_ipv6_forms_are_judged_by_the_ipv4_address_they_reach(address, reason):
    assert pack_module("media.netguard").refusal(address) == reason


def test_a_host_whose_ipv6_address_embeds_a_loopback_address_is_refused(guarded, nodes):
    guarded.answers["nat64.example"] = ["64:ff9b::7f00:1"]
    message = refused(guarded, nodes, "https://nat64.example/a.wav")
    assert message == (f"{NAME}: https://nat64.example/a.wav: nat64.example resolves to 64:ff9b::7f00:1, a NAT64 "
                       f"address of 127.0.0.1, a loopback address. Load Audio from URL fetches only public addresses, "
                       f"so that a shared workflow cannot reach into the server's network; {HINT}")
    assert guarded.requests == []
