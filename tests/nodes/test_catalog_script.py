"""Issue 20: scripts/catalog.py builds the catalog from fal's published model list and OpenAPI schemas (here a
loopback fake of fal's Platform API), says what changed, and keeps an endpoint fal stopped listing, deprecated."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support import PACK_DIR, pack_module, script_module

script = script_module("scripts/catalog.py")
CATALOG = json.loads((PACK_DIR / "data" / "catalog.json").read_text(encoding="utf-8"))

OPENAPI = {
    "paths": {"/vendor/sfx/v2": {"post": {"requestBody": {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/SfxInput"}}}}}}},
    "components": {"schemas": {
        "SfxInput": {"type": "object", "required": ["prompt", "audio_url"],
                     "x-fal-order-properties": ["prompt", "audio_url", "steps", "mode", "settings", "seed"],
                     "properties": {
                         "prompt": {"type": "string", "description": "What to hear", "maxLength": 500},
                         "audio_url": {"type": "string", "description": "The audio to continue"},
                         "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 8},
                         "mode": {"anyOf": [{"enum": ["fast", "slow"], "type": "string"}, {"type": "null"}],
                                  "default": "fast"},
                         "settings": {"$ref": "#/components/schemas/Settings"},
                         "seed": {"type": "integer"}}},
        "Settings": {"type": "object", "required": ["gain"], "properties": {
            "gain": {"type": "number", "minimum": 0, "maximum": 2}}},
        "File": {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
        "SfxOutput": {"type": "object", "required": ["audio"], "properties": {
            "audio": {"$ref": "#/components/schemas/File", "description": "The generated audio"},
            "caption": {"type": "string"}}}}}}


class FakeFal(BaseHTTPRequestHandler):
    """fal's GET /v1/models (two pages for text-to-audio) and GET /v1/models/pricing."""
    seen = []

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        FakeFal.seen.append((url.path, query, self.headers.get("Authorization")))
        if url.path == "/v1/models/pricing":
            body = {"prices": [{"endpoint_id": "vendor/sfx/v2", "unit_price": 0.002, "unit": "seconds",
                                "currency": "USD"}], "has_more": False}
        elif query.get("category") != "text-to-audio":
            body = {"models": [], "has_more": False}
        elif "cursor" not in query:
            body = {"models": [{"endpoint_id": "vendor/sfx/v2", "metadata": {
                "display_name": "Vendor SFX v2", "category": "text-to-audio", "status": "active"},
                "openapi": OPENAPI}], "has_more": True, "next_cursor": "page2"}
        else:
            body = {"models": [{"endpoint_id": "vendor/old", "metadata": {"display_name": "Old", "category":
                                                                          "text-to-audio", "status": "active"}}],
                    "has_more": False}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_fal():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeFal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeFal.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_from_fal_reads_the_model_list_openapi_and_prices(fake_fal):
    sources = script.from_fal("key-id:key-secret", fake_fal)
    assert sorted(sources) == ["vendor/old", "vendor/sfx/v2"]
    assert all(auth == "Key key-id:key-secret" for *_, auth in FakeFal.seen)
    categories = [q["category"] for path, q, _ in FakeFal.seen if path == "/v1/models"]
    assert set(categories) == set(script.FAL_CATEGORIES) and categories.count("text-to-audio") == 2  # 2 pages
    entry = sources["vendor/sfx/v2"]
    assert list(entry["inputs"]) == ["prompt", "audio_url", "steps", "mode", "settings", "seed"]  # fal's order
    assert entry["inputs"]["steps"] == {"type": "integer", "minimum": 1, "maximum": 50, "default": 8,
                                        "required": False}
    assert entry["inputs"]["mode"]["enum"] == ["fast", "slow"] and entry["inputs"]["mode"]["default"] == "fast"
    assert entry["inputs"]["audio_url"]["media"] == "audio" and entry["inputs"]["audio_url"]["required"]
    assert entry["inputs"]["settings"]["properties"]["gain"] == {"type": "number", "minimum": 0, "maximum": 2,
                                                                 "required": True}
    assert entry["outputs"]["audio"]["type"] == "file" and entry["outputs"]["audio"]["media"] == "audio"
    assert entry["price"]["unit_price"] == 0.002 and "inputs" not in sources["vendor/old"]

    built = script.build(sources)
    assert "vendor/old" in built["excluded"] and "no input schema" in built["excluded"]["vendor/old"]["reason"]
    spec = built["endpoints"]["vendor/sfx/v2"]
    assert spec["class"] == "FalAudioVendorSfxV2" and spec["name"] == "Vendor SFX v2 (fal)"
    assert spec["task"] == "sound effects" and spec["seed"] == {}
    kinds = {i["name"]: (i["kind"], i.get("socket")) for i in spec["inputs"]}
    assert kinds == {"prompt": ("multiline", None), "audio_url": ("audio", "audio"), "steps": ("int", None),
                     "mode": ("choice", None), "settings": ("json", None)}
    assert [(o["name"], o["kind"]) for o in spec["outputs"]] == [("audio", "audio"), ("caption", "text")]
    assert spec["price"]["counted"] == {"by": "output"}  # per second, no duration field: the output's length


def test_an_endpoint_fal_stopped_listing_stays_deprecated_with_its_successor():
    gone = "fal-ai/minimax/speech-02-hd"
    kept = "fal-ai/kokoro/french"
    previous = {"endpoints": {gone: CATALOG["endpoints"][gone], kept: CATALOG["endpoints"][kept]}}
    source = {"title": "Kokoro TTS (French)", "lab": "", "fal_category": "text-to-audio", "live": True,
              "price": {"unit_price": 0.03, "unit": "1000 characters", "seen": "2026-12-01"},
              "inputs": {"prompt": {"type": "string", "required": True}},
              "outputs": {"audio": {"type": "file", "required": True, "media": "audio"}}}
    new = {"title": "New", "lab": "", "fal_category": "text-to-speech", "live": True, "price": {},
           "inputs": {"text": {"type": "string", "required": True}}, "outputs": {}}
    built = script.build({kept: source, "vendor/new-tts": new}, previous)
    entry = built["endpoints"][gone]
    assert entry["deprecated"] is True and entry["task"] == "deprecated"
    assert entry["successor"] == "fal-ai/minimax/speech-2.8-hd" and entry["inputs"] == previous["endpoints"][gone][
        "inputs"]  # the node keeps its inputs: saved workflows load
    report = script.diff(previous, built).splitlines()
    assert f"gone     {gone}  (kept, deprecated; successor fal-ai/minimax/speech-2.8-hd)" in report
    assert "new      vendor/new-tts  New (fal)" in report
    assert any(line.startswith(f"changed  {kept}  (") and "price" in line for line in report)
    assert script.diff(built, built) == "no change"
    assert "Deprecated" in script.help_page(gone, entry) and "fal-ai/minimax/speech-2.8-hd" in script.help_page(
        gone, entry)


def test_catalog_file_is_deterministic_and_one_endpoint_per_line():
    text = (PACK_DIR / "data" / "catalog.json").read_text(encoding="utf-8")
    assert script.dumps(json.loads(text)) == text
    lines = text.splitlines()
    assert sum(1 for line in lines if line.startswith('"fal-ai/')) > 100
    assert len(text) < 450_000


@pytest.mark.parametrize("value, schema, found", [
    ("slow", {"type": "string", "enum": ["fast", "balanced"]}, ("mode", 'is "slow", which is not one of "fast", '
                                                                        '"balanced"')),
    (44100, {"type": "integer", "enum": [44100, 48000]}, None),
    ("44100", {"type": "integer", "enum": [44100, 48000]}, ("mode", 'is "44100", which is not one of 44100, 48000')),
    ("file:///etc/passwd", {"type": "file"}, ("mode", "must be a file URL (https://...)")),
    ("https://v3.fal.media/files/a.wav", {"type": "file"}, None),
    ({"any": ["thing"]}, {"type": "any"}, None),
    ([], {"type": "array", "items": {"type": "string"}, "min_items": 1}, ("mode", "must have at least 1 item(s)")),
    ([1, 2, 3], {"type": "array", "items": {"type": "integer"}, "max_items": 2},
     ("mode", "has 3 items; at most 2 are allowed")),
    ([None], {"type": "array", "items": {"type": "string"}}, ("mode[0]", "must be a string")),
    ({"a": None}, {"type": "object", "properties": {"a": {"type": "string"}}}, None),  # optional, no default
    ({"a": None}, {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
     ("mode.a", "must be a string")),
    ({"extra": 1}, {"type": "object"}, None),  # an object fal does not describe further
])
def test_schema_check_knows_options_urls_counts_and_nulls(value, schema, found):
    problem = pack_module("core.schema").problem
    assert problem(value, {**schema, "required": True}, "mode") == found
