"""fal Audio (any endpoint): exact requests from JSON arguments and uploaded sockets, the endpoint id
and JSON checked before anything is sent, audio found anywhere in the response, the key kept out,
and the curated nodes' journal, reuse, cost and errors."""

import json

import pytest
import torch

from fal_emulator import encode_sine
from support import CANARY_KEY, defaults, run_node
from test_models import assert_decodes_to, peak_hz, tone, upload_for

NAME = "FalAudioAnyEndpoint"


@pytest.fixture
def node(nodes):
    return nodes[NAME]


def call(node, **inputs):
    return run_node(node, **defaults(node, **inputs))


def test_defaults_call_stable_audio_and_return_audio_and_the_response(fal, node):
    fal.set_handler("fal-ai/stable-audio-25/text-to-audio", lambda p: {
        **fal.file_result(seconds=0.5, rate=8000, channels=1, freq=300.0), "seed": 1234})
    audio, response_json = call(node)
    (submission,) = fal.submissions
    assert submission.endpoint == "fal-ai/stable-audio-25/text-to-audio"
    assert submission.payload == {"prompt": "Gentle rain on a tin roof, distant thunder", "seconds_total": 10}
    assert tuple(audio["waveform"].shape) == (1, 1, 4000) and abs(peak_hz(audio) - 300.0) < 5
    response = json.loads(response_json)
    assert response["seed"] == 1234 and response["audio"]["url"].endswith("output.wav")


def test_sockets_are_uploaded_into_the_named_fields(fal, node, comfy):
    fal.set_handler("someone/mixer/v1", lambda p: fal.file_result(seconds=0.5, rate=8000, channels=2))
    first, second = tone(1.0, freq=200.0), tone(1.5, channels=2, freq=300.0)
    image = torch.full((1, 4, 6, 3), 0.5)
    call(node, endpoint="someone/mixer/v1", arguments='{"prompt": "blend", "steps": 4, "nested": {"a": [1, 2]}}',
         audio_1=first, audio_1_field="source_url", audio_2=second, audio_2_field="style_url", image=image,
         image_field="cover_url", unique_id="4")
    assert {"Uploading input audio", "Uploading input image"} <= set(comfy.texts())  # each says what it uploads
    (submission,) = fal.submissions
    payload = submission.payload
    assert set(payload) == {"prompt", "steps", "nested", "source_url", "style_url", "cover_url"}
    assert (payload["prompt"], payload["steps"], payload["nested"]) == ("blend", 4, {"a": [1, 2]})
    assert_decodes_to(upload_for(fal, payload["source_url"]).data, first)
    assert_decodes_to(upload_for(fal, payload["style_url"]).data, second)
    cover = upload_for(fal, payload["cover_url"])
    assert cover.content_type == "image/png" and cover.data.startswith(b"\x89PNG")


def test_unconnected_sockets_send_nothing(fal, node):
    fal.set_handler("someone/app", lambda p: fal.file_result(seconds=0.5, rate=8000, channels=1))
    call(node, endpoint="someone/app", arguments='{"x": 1}')
    assert fal.submissions[0].payload == {"x": 1} and fal.uploads == []


@pytest.mark.parametrize("endpoint", [
    "https://evil.example/steal", "http://queue.fal.run/fal-ai/lyria3", "evil.example:443/x", "fal-ai/../../admin",
    "fal-ai/x/..", "fal-ai/x?key=1", "fal-ai/x#frag", "fal-ai/x y", " fal-ai/x\n/y", "fal-ai", "/fal-ai/x",
    "fal-ai//x", "user@evil.example/x", "fal-ai/%2e%2e/x", "evil.example/x", "fal-ai/x\\y", "fal-ai/" + "x" * 200,
    "",
])
def test_endpoint_id_outside_fals_shape_is_refused_before_anything(fal, node, endpoint):
    with pytest.raises(Exception) as error:
        call(node, endpoint=endpoint)
    assert "'endpoint'" in str(error.value) and str(error.value).endswith("Nothing was sent to fal.")
    assert fal.requests == []  # not even an upload or a price lookup


@pytest.mark.parametrize("endpoint", ["fal-ai/minimax-music/v2.6", "CassetteAI/music-generator",
                                      "workflows/someone/my_flow", "fal-ai/elevenlabs/tts/eleven-v3"])
def test_fal_shaped_endpoint_ids_are_taken(fal, node, endpoint):
    fal.strict_contracts = False
    try:
        fal.set_handler(endpoint, lambda p: fal.file_result(seconds=0.5, rate=8000, channels=1))
        call(node, endpoint=endpoint, arguments="{}")
    finally:
        fal.strict_contracts = True
    assert [s.endpoint for s in fal.submissions] == [endpoint]


@pytest.mark.parametrize("text,message", [
    ('{"prompt": "x",\n "seconds_total": 10,\n}', "'arguments' is not valid JSON: Expecting property name enclosed "
                                                 "in double quotes at line 3, column 1 (character 39)"),
    ("", "'arguments' is not valid JSON: Expecting value at line 1, column 1 (character 1)"),
    ('["prompt", "x"]', "'arguments' must be a JSON object ({\"name\": value, ...}), got a JSON array"),
    ('"just text"', "got a JSON string"),
    ('{"seconds_total": Infinity}', "Infinity is not a JSON value"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "'arguments' nests arrays or objects deeper than the pack reads"),
])
def test_arguments_must_be_a_json_object(fal, node, text, message):
    with pytest.raises(Exception) as error:
        call(node, arguments=text)
    assert message in str(error.value) and str(error.value).endswith("Nothing was sent to fal.")
    assert fal.requests == []


def test_the_key_is_never_an_argument(fal, node):
    for text in (json.dumps({"prompt": "x", "api_key": CANARY_KEY}), json.dumps({"k": CANARY_KEY.split(":")[1]})):
        with pytest.raises(Exception) as error:
            call(node, arguments=text)
        assert "'arguments' contains your fal key" in str(error.value)
        assert CANARY_KEY.split(":")[1] not in str(error.value)
    assert fal.requests == []


def escaped(text: str) -> str:
    """Every character of `text` as a JSON \\u escape: the same string once parsed."""
    return "".join(f"\\u{ord(c):04x}" for c in text)


def test_the_key_is_found_in_the_parsed_arguments_however_it_is_written(fal, node):
    """Issue 18 case 11: the check reads the parsed JSON, so escapes, nesting and field names cannot hide the key."""
    key_id, secret = CANARY_KEY.split(":")
    hidden = [
        '{"api_key": "%s"}' % escaped(CANARY_KEY),
        '{"a": [1, {"b": [null, "prefix %s suffix"]}]}' % escaped(secret),
        '{"%s": true}' % escaped(key_id),
        json.dumps({"deep": json.loads("[" * 500 + json.dumps(CANARY_KEY) + "]" * 500)}),
    ]
    for text in hidden:
        with pytest.raises(Exception) as error:
            call(node, endpoint="someone/app", arguments=text)
        message = str(error.value)
        assert "'arguments' contains your fal key" in message and message.endswith("Nothing was sent to fal.")
        assert key_id not in message and secret not in message and escaped(secret) not in message
    assert fal.requests == []


def test_the_key_never_comes_out_in_the_response_json(fal, node):
    fal.set_handler("someone/echo", lambda p: {**fal.file_result(seconds=0.5, rate=8000, channels=1),
                                               "debug": f"Authorization: Key {CANARY_KEY}"})
    _, response_json = call(node, endpoint="someone/echo", arguments="{}")
    assert CANARY_KEY not in response_json and CANARY_KEY.split(":")[1] not in response_json
    assert json.loads(response_json)["debug"] == "Authorization: <redacted>"


@pytest.mark.parametrize("socket_inputs,message", [
    (dict(audio_1_field=""), "'audio_1_field' is ''; name the request field"),
    (dict(audio_1_field="audio url"), "'audio_1_field' is 'audio url'"),
    (dict(audio_1_field="x", arguments='{"x": "https://example.com/a.wav"}'), "'audio_1_field' is 'x', which the "
                                                                             "arguments set too"),
    (dict(audio_2=True, audio_1_field="a", audio_2_field="a"), "'audio_1_field' is 'a', the same field as "
                                                               "audio_2_field"),
])
def test_socket_fields_are_checked(fal, node, socket_inputs, message):
    inputs = {"audio_1": tone(1.0), **socket_inputs}
    if inputs.get("audio_2") is True:
        inputs["audio_2"] = tone(1.0, freq=300.0)
    with pytest.raises(Exception) as error:
        call(node, **inputs)
    assert message in str(error.value)
    assert fal.requests == []


RESPONSES = [
    # (response shape around the file, what is found)
    ({"output": {"files": [{"url": "FILE.txt", "content_type": "text/plain"}, {"url": "FILE.mp3"}]}}, "FILE.mp3"),
    ({"result": [{"url": "FILE", "content_type": "audio/wav"}]}, "FILE"),
    ({"text": "hello", "audio_url": "FILE.flac?token=1"}, "FILE.flac?token=1"),
    ({"video": {"url": "FILE.mp4", "content_type": "video/mp4"}, "track": {"url": "FILE.ogg"}}, "FILE.ogg"),
]


@pytest.mark.parametrize("shape,expected", RESPONSES)
def test_the_first_audio_file_is_found_by_content_type_or_extension(fal, node, shape, expected):
    stored = {}

    def place(value):
        if isinstance(value, dict):
            return {k: place(v) for k, v in value.items()}
        if isinstance(value, list):
            return [place(v) for v in value]
        if isinstance(value, str) and value.startswith("FILE"):
            name, _, query = value.partition("?")
            ext = name.split(".")[-1] if "." in name else "bin"
            fmt = {"mp3": "mp3", "flac": "flac", "ogg": "opus"}.get(ext, "wav")  # .txt/.mp4 hold WAV: never read
            data = encode_sine(0.5, 8000, 1, fmt, 350.0)
            url = fal.add_file(data, name.replace("FILE", "out"), "application/octet-stream")
            stored[value] = url + (f"?{query}" if query else "")
            return stored[value]
        return value

    response = place(shape)
    fal.set_handler("someone/app", lambda p: response)
    audio, response_json = call(node, endpoint="someone/app", arguments="{}")
    assert fal.downloads == [stored[expected].split("?")[0]]
    assert abs(peak_hz(audio) - 350.0) < 5
    assert json.loads(response_json) == response


def test_no_audio_in_the_response_is_a_clear_error_naming_its_fields(fal, node):
    fal.set_handler("fal-ai/wizper", lambda p: {"text": "hello", "chunks": [], "languages": ["en"]})
    with pytest.raises(Exception) as error:
        call(node, endpoint="fal-ai/wizper", arguments=json.dumps({"audio_url": "https://example.com/a.wav"}))
    assert str(error.value) == ("fal-ai/wizper: the response holds no audio file (no File with an audio/* content "
                                "type or an audio file extension); got fields ['chunks', 'languages', 'text']")


def test_kept_results_are_reused_and_a_new_seed_is_a_new_take(fal, node):
    fal.set_handler("someone/app", lambda p: fal.file_result(seconds=0.5, rate=8000, channels=1))
    first, _ = call(node, endpoint="someone/app", arguments='{"a": 1}')
    again, _ = call(node, endpoint="someone/app", arguments='{"a": 1}')
    assert len(fal.submissions) == 1 and torch.equal(first["waveform"], again["waveform"])
    call(node, endpoint="someone/app", arguments='{"a": 1}', seed=1)
    call(node, endpoint="someone/app", arguments='{"a": 2}')
    assert len(fal.submissions) == 3
    audio, response_json = call(node, endpoint="someone/app", arguments='{"a": 3}', takes=2)
    assert audio["waveform"].shape[0] == 2 and len(json.loads(response_json)) == 2
    assert len(fal.submissions) == 5


def test_the_model_contract_and_fal_errors_reach_the_user(fal, node):
    with pytest.raises(Exception) as error:
        call(node, endpoint="fal-ai/lyria3", arguments='{"prompt": "x", "duration": 30}')
    assert str(error.value) == "fal-ai/lyria3 rejected the input: duration: Extra inputs are not permitted"
    fal.retire("someone/gone")
    with pytest.raises(Exception) as error:
        call(node, endpoint="someone/gone", arguments="{}")
    assert str(error.value).startswith("fal Audio (any endpoint): fal.ai no longer serves someone/gone: it answered "
                                       "404 Not Found")
    assert str(error.value).endswith("Check the endpoint id for typos (copy it from the model's page, "
                                     "https://fal.ai/models/someone/gone); a retired model's page names the one to "
                                     "use instead.")


def test_cost_estimate_uses_the_endpoints_price(fal, node, comfy):
    fal.set_handler("fal-ai/lyria3", lambda p: fal.file_result(seconds=0.5, rate=8000, channels=2))
    run_node(node, unique_id="9", **defaults(node, endpoint="fal-ai/lyria3", arguments='{"prompt": "a jingle"}'))
    texts = comfy.texts()
    assert texts[0] == "Estimate ≈$0.04 · 1 request × $0.04/audio (fal API)"
    assert texts.index(texts[0]) < texts.index("Submitting")


def test_cancel_while_queued_cancels_the_request_on_fal(fal, node, comfy):
    fal.set_timing("someone/slow-app", stuck_in_queue=True)
    comfy.cancel_once_submitted(fal)
    with pytest.raises(comfy.InterruptProcessingException):
        run_node(node, unique_id="3", **defaults(node, endpoint="someone/slow-app", arguments='{"a": 1}'))
    assert fal.cancels == [fal.submissions[0].request_id]
    assert any(text.startswith("In queue") for text in comfy.texts())  # progress as on the curated nodes


def test_a_paid_result_whose_download_failed_is_fetched_again_without_a_new_charge(fal, node):
    fal.set_handler("someone/app", lambda p: fal.file_result(seconds=0.5, rate=8000, channels=1))
    fal.fault("GET", r"v3\.fal\.media/files/", status=404, times=1)
    with pytest.raises(Exception) as error:
        call(node, endpoint="someone/app", arguments='{"a": 1}')
    assert "Run the node again to retry the download (no new charge)" in str(error.value)
    audio, response_json = call(node, endpoint="someone/app", arguments='{"a": 1}')
    assert len(fal.submissions) == 1 and audio["waveform"].shape == (1, 1, 4000)


def test_list_items_with_other_endpoints_run_at_once_each_on_its_own_endpoint(fal, node, monkeypatch):
    """ComfyUI runs the items of a list input concurrently on one node instance: each run's endpoint, fields
    and arguments are its own, even while another item's clip is still being planned."""
    import asyncio
    import threading
    import time

    from support import pack_module

    options = pack_module("jobs.options")
    original, first = options.usable_output_folder, threading.Event()

    def slow_for_the_first(*args):  # the first run to get here waits while the other plans and submits
        if not first.is_set():
            first.set()
            time.sleep(0.3)
        return original(*args)

    monkeypatch.setattr(options, "usable_output_folder", slow_for_the_first)
    for endpoint in ("fal-ai/one", "fal-ai/two"):
        fal.set_handler(endpoint, lambda p: fal.file_result(seconds=0.5, rate=8000, channels=1))
    clip = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000}

    instance = node()  # one instance for both items, as ComfyUI has

    async def both_items():
        return await asyncio.gather(*(instance.generate(**defaults(
            node, endpoint=endpoint, arguments=json.dumps({"prompt": endpoint}), audio_1=clip,
            audio_1_field="audio_url")) for endpoint in ("fal-ai/one", "fal-ai/two")))

    asyncio.run(both_items())
    assert sorted((s.endpoint, s.payload["prompt"]) for s in fal.submissions) == [
        ("fal-ai/one", "fal-ai/one"), ("fal-ai/two", "fal-ai/two")]
