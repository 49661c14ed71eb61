"""Issue 6: Load Audio from URL: emulator-served files and data: URIs, decoded like fal results;
bounded size, refused pages, HTTP errors that name the URL without its query, no fal key sent."""

import asyncio
import base64
import logging

import httpx
import pytest
import torch

from support import CANARY_KEY, pack_module, run_node
from fal_emulator import encode_sine

NODE = "FalAudioLoadURL"
NAME = "Load Audio from URL (fal Audio)"


def load(nodes, url, max_megabytes=100.0):
    return run_node(nodes[NODE], url=url, max_megabytes=max_megabytes)[0]


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_loads_what_the_emulator_serves_decoded_like_model_outputs(fal, nodes, fmt):
    url = fal.audio_file(seconds=1.0, rate=32000, channels=2, fmt=fmt)
    audio = load(nodes, url)
    expected = pack_module("media.audio").decode(encode_sine(seconds=1.0, rate=32000, channels=2, fmt=fmt))
    assert audio["sample_rate"] == 32000 and torch.equal(audio["waveform"], expected["waveform"])
    assert audio["waveform"].dtype == torch.float32 and audio["waveform"].shape[:2] == (1, 2)
    assert fal.downloads == [url]


def test_sends_no_fal_key_and_keeps_signed_queries_out_of_messages_and_logs(fal, nodes, monkeypatch,
                                                                           captured_logs):
    headers = []
    serve = fal._download

    def recording(path, request_headers):
        headers.append(request_headers)
        return serve(path, request_headers)

    monkeypatch.setattr(fal, "_download", recording)
    url = fal.audio_file(seconds=0.5) + "?token=s3cr3t-signature-0042&expires=99"
    assert load(nodes, url)["sample_rate"] == 44100
    assert headers and all("authorization" not in h for h in headers)
    assert all(CANARY_KEY not in str(h) for h in headers)
    missing = url.replace("/files/", "/files/gone")
    with pytest.raises(Exception) as caught:
        load(nodes, missing)
    message = str(caught.value)
    assert "HTTP 404" in message and "v3.fal.media/files/gone" in message and "?…" in message
    assert "s3cr3t" not in message and "expires" not in message
    # Every log line but the emulator's own (it plays the server, which does see the query).
    assert not [r for r in captured_logs.records if "s3cr3t" in r.getMessage() and r.name != "fal_emulator"]


def test_loads_a_data_uri(nodes):
    wav = encode_sine(seconds=0.25, rate=16000, channels=1)
    audio = load(nodes, "data:audio/wav;base64," + base64.b64encode(wav).decode())
    assert audio["sample_rate"] == 16000 and tuple(audio["waveform"].shape) == (1, 1, 4000)


def test_404_names_node_and_url(fal, nodes):
    with pytest.raises(Exception) as caught:
        load(nodes, "https://v3.fal.media/files/nope/song.wav")
    assert str(caught.value) == (f"{NAME}: https://v3.fal.media/files/nope/song.wav answered HTTP 404 Not Found. "
                                 "Check the URL (links to files often expire).")


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_a_web_page_is_refused_as_not_audio(fal, nodes, content_type):
    url = fal.add_file(b"<!DOCTYPE html>\n<html><body>Download song.mp3 here</body></html>", "song.mp3",
                       content_type)
    with pytest.raises(Exception) as caught:
        load(nodes, url)
    message = str(caught.value)
    assert message.startswith(f"{NAME}: {url} is a web page") and "direct link to the audio file" in message


def test_a_file_that_is_not_audio_says_so(fal, nodes):
    url = fal.add_file(bytes(range(256)) * 40, "song.wav", "audio/wav")
    with pytest.raises(Exception) as caught:
        load(nodes, url)
    assert str(caught.value).startswith(f"{NAME}: {url} is not an audio file that can be decoded (")


def test_too_large_by_content_length_is_refused_before_downloading_it(fal, nodes):
    url = fal.audio_file(seconds=2.0, rate=44100, channels=2)  # 352 kB
    with pytest.raises(Exception) as caught:
        load(nodes, url, max_megabytes=0.1)
    assert str(caught.value) == (f"{NAME}: {url} is 0.353 MB, more than max_megabytes (0.1 MB). Nothing was "
                                 "downloaded; raise 'max_megabytes' to allow it.")
    assert load(nodes, url, max_megabytes=0.4)["waveform"].shape[-1] == 88200


def test_too_large_without_content_length_is_stopped_while_streaming(monkeypatch):
    monkeypatch.setenv("FAL_AUDIO_ALLOW_PRIVATE_URLS", "1")  # example.com does not resolve here (no DNS)
    fetch = pack_module("media.fetch")
    sent = []

    async def body():
        for _ in range(100):
            sent.append(1)
            yield b"\0" * 10_000

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body(),
                                                                   headers={"content-type": "audio/wav"}))
    with pytest.raises(fetch.FetchFailed) as caught:
        asyncio.run(fetch.fetch("https://example.com/a.wav?sig=abc", 50_000, NAME, transport=transport))
    assert str(caught.value) == (f"{NAME}: https://example.com/a.wav?… is larger than max_megabytes (0.05 MB); "
                                 "the download was stopped. Raise 'max_megabytes' to allow it.")
    assert len(sent) < 10  # stopped after the limit, not after reading all 1 MB


@pytest.mark.parametrize("url, rule", [
    ("", "'url' is empty"),
    ("file:///etc/passwd", "'url' must be an http://, https:// or data: URL"),
    ("v3.fal.media/files/a.wav", "'url' must be an http://, https:// or data: URL"),
    ("data:text/html,<html></html>", "the URL is a data: URI (text/html), not audio"),
    ("data:audio/wav;base64," + "A" * 200_000, "more than max_megabytes (0.1 MB)"),
])
def test_bad_urls_are_refused_with_the_rule(nodes, url, rule):
    with pytest.raises(Exception) as caught:
        load(nodes, url, max_megabytes=0.1)
    assert str(caught.value).startswith(f"{NAME}: ") and rule in str(caught.value)


def test_httpx_request_logs_keep_the_query_out(fal, nodes, captured_logs, monkeypatch):
    captured_logs.set_level(logging.INFO, logger="httpx")
    # Whatever ran before: the pack's key redactor (which formats the message) filters first.
    httpx_logger = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_logger, "filters", [])
    pack_module("core.log").guard_third_party_loggers()
    url = fal.audio_file(seconds=0.5) + "?X-Amz-Signature=deadbeefcafe"
    load(nodes, url)
    # The pack's own download leaves no httpx line at all (core/log.py own_requests); a request httpx makes for
    # someone else after the pack loaded a URL is logged with its query cut.
    assert not [r for r in captured_logs.records if r.name == "httpx"]
    import httpx

    with httpx.Client(verify=False) as client:
        client.get(url)
    assert "HTTP Request: GET https://v3.fal.media/files/" in captured_logs.text
    assert not [r for r in captured_logs.records if "deadbeefcafe" in r.getMessage() and r.name != "fal_emulator"]


def test_follows_redirects_and_explains_server_errors(fal, nodes):
    target = fal.audio_file(seconds=0.5, channels=1)
    fal.fault("GET", r"v3\.fal\.media/files/moved/song\.wav$", status=302, body=b"", headers={"Location": target})
    assert load(nodes, "https://v3.fal.media/files/moved/song.wav")["waveform"].shape[:2] == (1, 1)
    fal.fault("GET", r"v3\.fal\.media/files/broken/song\.wav$", status=500, body={"detail": "boom"})
    with pytest.raises(Exception) as caught:
        load(nodes, "https://v3.fal.media/files/broken/song.wav")
    assert str(caught.value) == (f"{NAME}: https://v3.fal.media/files/broken/song.wav answered HTTP 500 Internal "
                                 "Server Error. The server failed; try again later.")


def test_a_percent_encoded_data_uri_is_measured_after_decoding(nodes):
    wav = encode_sine(seconds=0.2, rate=8000, channels=1)
    from urllib.parse import quote

    uri = "data:audio/wav," + quote(wav, safe="")  # up to 3 characters per byte
    limit = len(wav) + 1000
    assert len(uri) * 3 // 4 > limit  # a base64-style estimate would refuse it
    audio = load(nodes, uri, max_megabytes=limit / 1e6)
    assert audio["sample_rate"] == 8000 and audio["waveform"].shape[-1] == 1600
