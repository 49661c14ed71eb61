#!/usr/bin/env python3
"""Build data/catalog.json: the spec of every fal audio endpoint, and what is generated from it.

    python scripts/catalog.py                 # from the registry snapshot (offline)
    python scripts/catalog.py --from-fal      # from fal's model list and OpenAPI schemas (FAL_KEY if fal asks)
    python scripts/catalog.py --check         # exit 1 if the committed files differ from a rebuild

Writes data/catalog.json (one endpoint per line, sorted), data/catalog-index.json (the small index the pack
reads at import), web/docs/<ClassName>.md (a help page per generated node) and the tables of docs/catalog.md, and prints
what changed: new, changed, gone. An endpoint the source no longer lists keeps its entry, marked deprecated
(with its successor where one is known), so saved workflows keep loading.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from _pack import pack  # noqa: E402 - the pack's modules (nodes.catalog renders the help pages' input lists)
CATALOG = ROOT / "data" / "catalog.json"
INDEX = ROOT / "data" / "catalog-index.json"
DOCS = ROOT / "web" / "docs"
DOC = ROOT / "docs" / "catalog.md"
# The registry snapshot beside the repository (../shared/seeds/; a worktree one level deeper), or FAL_AUDIO_REGISTRY.
REGISTRY = Path(os.environ.get("FAL_AUDIO_REGISTRY") or next(
    (p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()), ROOT.parent / "shared")
    / "seeds" / "fal-audio-registry-2026-08.json")
FAL_API = "https://api.fal.ai/v1"
# fal's gallery categories that hold audio models (the model list is asked per category).
FAL_CATEGORIES = ("text-to-audio", "audio-to-audio", "text-to-speech", "speech-to-text", "video-to-audio",
                  "audio-to-text", "speech-to-speech", "audio-to-video", "video-to-video")

# The curated nodes' specs (data/nodes/*.json): their endpoints keep the curated node (the catalog holds fal's spec
# too), and their help pages' input lists are rendered from them.
NODE_SPECS = ROOT / "data" / "nodes"
CURATED = {spec["endpoint"]: name for path in sorted(NODE_SPECS.glob("*.json"))
           for name, spec in json.loads(path.read_text(encoding="utf-8")).items()}
# What replaces an endpoint fal stopped listing (named when it answers 404).
SUCCESSORS = {
    "fal-ai/minimax-music/v1.5": "fal-ai/minimax-music/v2.6",
    "fal-ai/minimax-music/v2": "fal-ai/minimax-music/v2.6",
    "fal-ai/minimax/speech-02-hd": "fal-ai/minimax/speech-2.8-hd",
    "fal-ai/minimax/speech-02-turbo": "fal-ai/minimax/speech-2.8-turbo",
    "fal-ai/minimax/preview/speech-2.5-hd": "fal-ai/minimax/speech-2.8-hd",
    "fal-ai/minimax/preview/speech-2.5-turbo": "fal-ai/minimax/speech-2.8-turbo",
    "fal-ai/elevenlabs/sound-effects": "fal-ai/elevenlabs/sound-effects/v2",
    "fal-ai/stable-audio": "fal-ai/stable-audio-25/text-to-audio",
}
# Better names where fal's title is generic (a title several endpoints share, or no model name at all).
TITLES = {
    "fal-ai/elevenlabs/text-to-dialogue/eleven-v3": "ElevenLabs Text to Dialogue v3",
    "fal-ai/dia-tts/voice-clone": "Dia TTS Voice Clone",
    "fal-ai/kling-video/video-to-audio": "Kling Video to Audio",
    "fal-ai/ltx-2.3-quality/text-to-audio": "LTX 2.3 Quality Text to Audio",
    "fal-ai/ltx-2.3-quality/text-to-audio/lora": "LTX 2.3 Quality Text to Audio LoRA",
    "fal-ai/minimax/preview/speech-2.5-hd": "MiniMax Speech 2.5 HD (preview)",
    "fal-ai/minimax/preview/speech-2.5-turbo": "MiniMax Speech 2.5 Turbo (preview)",
    "fal-ai/minimax-music/v2": "MiniMax Music v2",
    "fal-ai/maya/batch": "Maya1 Batch",
    "fal-ai/personaplex": "PersonaPlex",
    "fal-ai/sam-audio/separate": "SAM Audio Separate",
    "fal-ai/sam-audio/span-separate": "SAM Audio Span Separate",
    "fal-ai/sam-audio/visual-separate": "SAM Audio Visual Separate",
    "fal-ai/tada/3b/text-to-speech": "Tada TTS 3B",
    "fal-ai/thinksound": "ThinkSound Video to Video",
    "fal-ai/thinksound/audio": "ThinkSound Video to Audio",
    "fal-ai/vibevoice/0.5b": "VibeVoice 0.5B",
    "fal-ai/chatterbox/text-to-speech/multilingual": "Chatterbox Multilingual",
    "fal-ai/chatterbox/speech-to-speech": "Chatterbox Speech to Speech",
    "fal-ai/chatterbox/text-to-speech": "Chatterbox Text to Speech",
    "fal-ai/speech-to-text/turbo": "Speech-to-Text Turbo",
    "fal-ai/stable-audio-3/medium/text-to-audio": "Stable Audio 3 Medium Text to Audio",
    "fal-ai/stable-audio-3/small/music/audio-to-audio": "Stable Audio 3 Small Music Audio to Audio",
    "fal-ai/stable-audio-3/small/music/base/text-to-audio": "Stable Audio 3 Small Music Base Text to Audio",
    "fal-ai/stable-audio-3/small/sfx/audio-to-audio": "Stable Audio 3 Small SFX Audio to Audio",
    "mirelo-ai/sfx-v1.5/video-to-audio": "Mirelo SFX v1.5 Video to Audio",
    "mirelo-ai/sfx-v1.5/video-to-video": "Mirelo SFX v1.5 Video to Video",
    "mirelo-ai/sfx-v1/video-to-audio": "Mirelo SFX v1 Video to Audio",
    "mirelo-ai/sfx-v1/video-to-video": "Mirelo SFX v1 Video to Video",
    "mirelo-ai/sfx1.6/extend-audio": "Mirelo SFX 1.6 Extend Audio",
    "mirelo-ai/sfx1.6/inpaint-audio": "Mirelo SFX 1.6 Inpaint Audio",
    "mirelo-ai/sfx1.6/text-to-audio": "Mirelo SFX 1.6 Text to Audio",
    "mirelo-ai/sfx1.6/video-to-video": "Mirelo SFX 1.6 Video to Video",
    "resemble-ai/chatterboxhd/speech-to-speech": "Chatterbox HD Speech to Speech",
    "resemble-ai/chatterboxhd/text-to-speech": "Chatterbox HD Text to Speech",
    "sonilo/v1.1/text-to-sound-effects": "Sonilo v1.1 Text to Sound Effects",
    "sonilo/v1.1/video-to-music": "Sonilo v1.1 Video to Music",
    "sonilo/v1.1/video-to-sound-effects": "Sonilo v1.1 Video to Sound Effects",
    "sonilo/v1.1/video-to-video-music": "Sonilo v1.1 Video to Video Music",
    "sonilo/v1.1/video-to-video-sound-effects": "Sonilo v1.1 Video to Video Sound Effects",
    "sonilo/v1.1/text-to-music": "Sonilo v1.1 Text to Music",
}
LABS = {"fal-ai": "", "cassetteai": "CassetteAI", "mirelo-ai": "Mirelo", "resemble-ai": "Resemble AI",
        "sonilo": "Sonilo", "bytedance": "ByteDance", "alibaba": "Alibaba", "async": "Async", "xai": "xAI",
        "nvidia": "NVIDIA", "minimax": "MiniMax", "openrouter": "OpenRouter"}
# Endpoints that cannot be a queue node, by what gives them away, and why.
STREAMING = re.compile(r"/(stream|realtime)$")
NOT_A_NODE = {
    "training": "a trainer: it fine-tunes a model from a dataset archive and returns weights, not audio",
    "json": "a JSON utility endpoint (fal files it under 'json'): its result is a loudness report, not a "
            "generation; use ComfyUI's own audio nodes or the any-endpoint node",
    "unknown": "an LLM router (fal files it under 'unknown'): it forwards to a chosen chat model, whose "
               "arguments and price depend on that model; use the any-endpoint node",
}
STREAM_REASON = "a realtime/streaming endpoint (WebSocket or server-sent chunks), not a queue request"
NO_SCHEMA_REASON = "fal publishes no input schema for it yet (no types, no OpenAPI): nothing to build a node from"

TASKS = ("music", "sound effects", "speech", "voice", "transcription", "separation and cleanup", "video to audio",
         "deprecated")
# Inputs most users never touch: shown under the node's advanced inputs where the frontend supports it.
ADVANCED = re.compile(r"guidance|cfg|scheduler|steps|sampler|solver|sigma|shift|temperature|top_[pk]|"
                      r"repetition|penalty|granularity|variance|output_format|audio_format|format$|sample_rate|"
                      r"bitrate|channel|safety|expansion|normalization|chunk|overlap|acceleration|"
                      r"reranking|noise|tokens|subtalker|_scale$|strength_|upload_audio|loudness|timings|"
                      r"interval|minimum_|use_pnc|accuracy|english_|language_boost|streaming|latency")
# Fields the pack never sends: fal's defaults are what the node needs (a file by URL, not inline data).
NEVER_SENT = {"sync_mode"}
MULTILINE = re.compile(r"prompt|text|lyrics|script|transcript|description|tags$|instruction")
DURATION_FIELDS = ("duration", "seconds_total", "total_seconds", "duration_seconds", "music_length_ms",
                   "length_seconds", "audio_length", "duration_ms")
TEXT_FIELDS = ("text", "prompt", "input", "script", "texts", "prompts", "text_prompt")
PER_REQUEST = ("audio", "generation", "unit", "video", "request", "cloned voice", "clip", "song", "image")


# -- sources -------------------------------------------------------------------------------------

def _ts_schema(ts: str, types: dict, local: dict, depth: int = 0) -> dict:
    """fal-js's TypeScript type -> a schema in core/schema.py's vocabulary."""
    ts = ts.strip().lstrip("|").strip()
    if ts.startswith("Array<") and ts.endswith(">") and ts.count("Array<") == 1:
        return {"type": "array", "items": _ts_schema(ts[6:-1], types, local, depth)}
    if "Blob" in ts or ts in ("File", "File | string", "Audio", "Video", "AudioFile", "Image"):
        return {"type": "file"}
    if " | " in ts:
        parts = [p.strip() for p in ts.split(" | ") if p.strip()]
        if all(p.startswith('"') for p in parts):
            return {"type": "string", "enum": [json.loads(p) for p in parts]}
        if all(re.fullmatch(r"-?\d+(\.\d+)?", p) for p in parts):
            return {"type": "number", "enum": [json.loads(p) for p in parts]}
        return _ts_schema(parts[0], types, local, depth)
    if ts in ("string", "number", "boolean"):
        return {"type": ts}
    fields = local.get(ts) or types.get(ts)
    if isinstance(fields, dict) and depth < 6:
        return {"type": "object", "name": ts, "properties": {
            name: _field(f, types, local, depth + 1) for name, f in sorted(fields.items())}}
    return {"type": "any"}


def _field(f: dict, types: dict, local: dict, depth: int = 0) -> dict:
    """A registry field (fal-js type + fal's JSON schema details) -> schema."""
    schema = _ts_schema(f.get("type", "unknown"), types, local, depth)
    json_type = f.get("json_type")
    if json_type == "integer" and schema["type"] == "number":
        schema["type"] = "integer"
    if json_type == "file":
        schema = {"type": "file"}
    if f.get("enum"):
        values = f["enum"]
        schema = {"type": "string" if all(isinstance(v, str) for v in values) else
                  "integer" if all(isinstance(v, int) for v in values) else "number", "enum": list(values)}
    if schema["type"] == "array" and f.get("items_enum"):
        schema["items"] = {"type": "string", "enum": list(f["items_enum"])}
    if schema["type"] == "array" and isinstance(f.get("items_schema"), str) and schema["items"]["type"] == "any":
        schema["items"] = _ts_schema(f["items_schema"], types, local, depth)
    for ours, theirs in (("minimum", "min"), ("maximum", "max"), ("min_length", "min_length"),
                         ("max_length", "max_length"), ("min_items", "min_items"), ("max_items", "max_items")):
        if isinstance(f.get(theirs), (int, float)) and not isinstance(f.get(theirs), bool):
            schema[ours] = f[theirs]
    if "default" in f and f["default"] != "null":
        schema["default"] = f["default"]
    schema["required"] = bool(f.get("required"))
    if f.get("description"):
        schema["description"] = " ".join(str(f["description"]).split())
    return schema


def from_registry(path: Path) -> dict:
    """The registry snapshot -> {endpoint: source entry}."""
    data = json.loads(path.read_text(encoding="utf-8"))
    types = data.get("types", {})
    found = {}
    for endpoint, raw in data["endpoints"].items():
        local = raw.get("types_local") or {}
        entry = {"title": raw.get("title", ""), "lab": raw.get("lab") or "", "fal_category": raw.get("category", ""),
                 "live": str(raw.get("status", "")).startswith("live"), "price": _price(raw.get("price"))}
        if "input" in raw:
            inputs = {name: _field(f, types, local) for name, f in raw["input"].items()}
            order = [n for n in raw.get("input_order") or [] if n in inputs]
            order += sorted(n for n in inputs if n not in order)
            entry["inputs"] = {name: inputs[name] for name in order}
            entry["outputs"] = {name: _field(f, types, local) for name, f in sorted(raw.get("output", {}).items())}
            for name, kind in (raw.get("media_inputs") or {}).items():
                if name in entry["inputs"]:
                    entry["inputs"][name]["media"] = kind
            for name, kind in (raw.get("media_outputs") or {}).items():
                if name in entry["outputs"]:
                    entry["outputs"][name]["media"] = kind
        found[endpoint] = entry
    return found


def _price(price) -> dict:
    if not isinstance(price, dict) or price.get("unit_price") is None:
        return {}
    seen = re.search(r"\d{4}-\d{2}-\d{2}", str(price.get("source", "")))
    return {"unit_price": price["unit_price"], "unit": " ".join(str(price.get("unit", "")).split()),
            "seen": seen.group(0) if seen else ""}


# fal's Platform API: GET /v1/models?category=...&expand=openapi-3.0 (pages by cursor), GET /v1/models/pricing.

def _media_kind(name: str, text: str) -> str:
    words = f"{name} {text}".lower()
    for kind in ("video", "image", "audio"):
        if kind in name.lower():
            return kind
    for kind, hints in (("audio", ("audio", "voice", "speech", "sound", "music", ".wav", ".mp3")),
                        ("video", ("video", ".mp4")), ("image", ("image", "picture"))):
        if any(h in words for h in hints):
            return kind
    return "other"


def _openapi_field(schema: dict, spec: dict, name: str, required: bool, depth: int = 0) -> dict:
    """One OpenAPI 3 property -> schema (the same vocabulary as _field)."""
    def resolve(s):
        while isinstance(s, dict) and "$ref" in s:
            s = spec.get("components", {}).get("schemas", {}).get(s["$ref"].rsplit("/", 1)[-1], {})
        return s or {}

    source = resolve(schema)
    for combo in ("anyOf", "oneOf", "allOf"):
        options = [o for o in source.get(combo, []) if resolve(o).get("type") != "null"]
        if options:
            merged = {k: v for k, v in source.items() if k != combo}
            source = {**resolve(options[0]), **merged}
    kind = source.get("type")
    props = source.get("properties") or {}
    if kind == "object" and "url" in props and depth > 0 or name.endswith("_url") and kind == "string":
        out = {"type": "file", "media": _media_kind(name, source.get("description", ""))}
    elif kind == "array":
        out = {"type": "array", "items": _openapi_field(source.get("items", {}), spec, name, True, depth + 1)}
        if out["items"].get("type") == "file" or name.endswith("_urls"):
            out["items"] = {"type": "file"}
            out["media"] = _media_kind(name, source.get("description", ""))
    elif kind == "object" and depth < 6:
        needed = set(source.get("required", []))
        out = {"type": "object", "properties": {k: _openapi_field(v, spec, k, k in needed, depth + 1)
                                                for k, v in sorted(props.items())}}
    elif kind in ("string", "integer", "number", "boolean"):
        out = {"type": kind}
    else:
        out = {"type": "any"}
    if source.get("enum"):
        out["enum"] = list(source["enum"])
    for ours, theirs in (("minimum", "minimum"), ("maximum", "maximum"), ("min_length", "minLength"),
                         ("max_length", "maxLength"), ("min_items", "minItems"), ("max_items", "maxItems")):
        if isinstance(source.get(theirs), (int, float)):
            out[ours] = source[theirs]
    if "default" in source and source["default"] is not None:
        out["default"] = source["default"]
    out["required"] = required
    if source.get("description"):
        out["description"] = " ".join(str(source["description"]).split())
    return out


def _openapi_entry(model: dict) -> dict:
    meta = model.get("metadata") or {}
    endpoint = model["endpoint_id"]
    entry = {"title": meta.get("display_name") or endpoint, "lab": meta.get("lab") or "",
             "fal_category": meta.get("category", ""), "live": meta.get("status", "active") == "active", "price": {}}
    spec = model.get("openapi") or {}
    schemas = spec.get("components", {}).get("schemas", {})
    post = next((op for path, ops in (spec.get("paths") or {}).items() if path.rstrip("/").endswith(endpoint)
                 for method, op in ops.items() if method == "post"), None)
    if post is None:
        return entry
    ref = post["requestBody"]["content"]["application/json"]["schema"]
    input_schema = schemas.get(ref.get("$ref", "").rsplit("/", 1)[-1], ref)
    needed = set(input_schema.get("required", []))
    props = input_schema.get("properties", {})
    order = [n for n in input_schema.get("x-fal-order-properties", []) if n in props]
    order += sorted(n for n in props if n not in order)
    entry["inputs"] = {n: _openapi_field(props[n], spec, n, n in needed) for n in order}
    output_name = next((name for name in schemas if name.endswith("Output")), None)
    output = schemas.get(output_name, {})
    needed = set(output.get("required", []))
    entry["outputs"] = {n: _openapi_field(s, spec, n, n in needed, 1) for n, s in
                        sorted((output.get("properties") or {}).items())}
    for fields in (entry["inputs"], entry["outputs"]):
        for name, field in fields.items():
            if field["type"] == "file" and "media" not in field:
                field["media"] = _media_kind(name, field.get("description", ""))
    return entry


def from_fal(key: str = "", api: str = FAL_API, client=None) -> dict:
    """fal's published model list with OpenAPI schemas, and its prices -> {endpoint: source entry}."""
    import httpx

    headers = {"Authorization": f"Key {key}"} if key else {}
    http = client or httpx.Client(headers=headers, timeout=60.0)
    found = {}
    for category in FAL_CATEGORIES:
        params = {"category": category, "status": "active", "expand": "openapi-3.0", "limit": 100}
        for _ in range(100):
            response = http.get(f"{api}/models", params=params)
            response.raise_for_status()
            body = response.json()
            for model in body.get("models", []):
                found[model["endpoint_id"]] = _openapi_entry(model)
            if not body.get("has_more") or not body.get("next_cursor"):
                break
            params = {**params, "cursor": body["next_cursor"]}
    ids = sorted(found)
    for start in range(0, len(ids), 50):
        response = http.get(f"{api}/models/pricing", params={"endpoint_id": ",".join(ids[start:start + 50])})
        if response.status_code != 200:
            print(f"fal's pricing API answered HTTP {response.status_code}: prices left out", file=sys.stderr)
            break
        for row in response.json().get("prices", []):
            if row.get("endpoint_id") in found:
                found[row["endpoint_id"]]["price"] = {"unit_price": row["unit_price"], "unit": row["unit"],
                                                      "seen": _today()}
    return found


def _today() -> str:
    import datetime

    return datetime.date.today().isoformat()


# -- specs ---------------------------------------------------------------------------------------

def class_name(endpoint: str) -> str:
    """FalAudio + a stable CamelCase of the endpoint id (fal-ai/ dropped): fal-ai/sam-audio/separate ->
    FalAudioSamAudioSeparate."""
    path = endpoint[len("fal-ai/"):] if endpoint.startswith("fal-ai/") else endpoint
    words = re.split(r"[^A-Za-z0-9]+", path.replace(".", ""))
    return "FalAudio" + "".join(w[:1].upper() + w[1:] for w in words if w)


def display_name(endpoint: str, source: dict) -> str:
    title = TITLES.get(endpoint) or source["title"] or endpoint
    owner = endpoint.split("/")[0]
    lab = LABS.get(owner, source.get("lab") or "")
    if source.get("lab") and owner == "fal-ai":
        lab = source["lab"]
    if lab and lab.lower().replace(" ", "") not in title.lower().replace(" ", ""):
        title = f"{lab} {title}"
    return f"{title} (fal)"


def task(endpoint: str, source: dict) -> str:
    """The node library's category by task, from fal's gallery category and the endpoint/title."""
    if not source.get("live", True):
        return "deprecated"
    words = f"{endpoint} {source['title']}".lower()
    category = source.get("fal_category", "")
    if re.search(r"separat|demucs|isolation|deepfilter|compressor|impulse|merge-audios|loudnorm", words):
        return "separation and cleanup"
    if category in ("speech-to-text", "audio-to-text") or re.search(r"understanding|transcri|vad\b", words):
        return "transcription"
    if category == "speech-to-speech" or re.search(r"voice-changer|clone|create-voice|voice-design|personaplex",
                                                   words):
        return "voice"
    if category in ("video-to-audio", "video-to-video") or "video-to" in words or "foley" in words:
        return "video to audio"
    if category == "text-to-speech" or re.search(r"tts|speech|dialogue|kokoro|csm|zonos|f5|dubbing|dia\b", words):
        return "speech"
    if re.search(r"sfx|sound-effect|sound effect", words):
        return "sound effects"
    return "music"


# Widget names for fal fields whose own name reads like a secret (no widget may look like a place for a key).
WIDGET_NAMES = {"keyterms": "boosted_terms"}


def _socket_name(name: str, taken: set) -> str:
    short = re.sub(r"_urls?$", "", name)
    return short if short != name and short not in taken else name


def _tooltip(name: str, field: dict) -> str:
    text = field.get("description") or f"fal's '{name}' field."
    return text if text.endswith((".", "!", "?")) else text + "."


def _input(name: str, field: dict, taken: set) -> dict:
    """One fal input field -> how the node shows it."""
    item = {"name": name, "fal": {k: v for k, v in field.items() if k not in ("description", "media")},
            "tooltip": _tooltip(name, field)}
    media = field.get("media")
    kind = field["type"]
    if media in ("audio", "image", "video") and (kind == "file" or (kind == "string" and name.endswith("_url"))):
        item.update(kind=media, socket=_socket_name(name, taken))
        item["fal"]["type"] = "file"
    elif media in ("audio", "image", "video") and kind == "array":
        item.update(kind=f"{media}_list", socket=_socket_name(name, taken))
        item["fal"]["items"] = {"type": "file"}
    elif kind == "file" or media:
        item["kind"] = "url"
        item["fal"]["type"] = "file"
    elif kind in ("object", "array", "any"):
        item["kind"] = "json"
    elif "enum" in field:
        item["kind"] = "choice"
    elif kind == "boolean":
        item["kind"] = "bool"
    elif kind in ("integer", "number"):
        item["kind"] = "int" if kind == "integer" else "float"
    else:
        item["kind"] = "multiline" if MULTILINE.search(name) else "text"
    if "socket" not in item and re.search(r"key|secret", name, re.IGNORECASE):
        item["widget"] = WIDGET_NAMES[name]  # a KeyError here: name the new field in WIDGET_NAMES
    if not field.get("required") and "default" not in field and item["kind"] not in ("text", "multiline", "json"):
        item["unset"] = True  # not sent unless set: fal applies its own default
    if ADVANCED.search(name) and not field.get("required"):
        item["advanced"] = True
    return item


def _output(name: str, field: dict) -> dict:
    media, kind = field.get("media"), field["type"]
    if kind == "array" and media in ("audio", "video"):
        out = f"{media}_list"
    elif media in ("audio", "video"):
        out = media
    elif kind == "file":
        out = "url"
    elif kind == "string" and "enum" not in field:
        out = "text"
    else:
        out = "data"  # numbers, lists, objects: in the response JSON only
    return {"name": name, "kind": out, "fal": {k: v for k, v in field.items() if k not in ("description",)}}


def _timed_words(field: dict) -> bool:
    """A list of objects with text, start and end: a transcript's timed words."""
    props = (field.get("items") or {}).get("properties") or {}
    return field["type"] == "array" and {"text", "start", "end"} <= set(props)


def _counted(source: dict, inputs: list, outputs: list) -> dict:
    """How a request's price is counted, from the price's unit and the fields."""
    unit = (source.get("price") or {}).get("unit", "").lower()
    names = [i["name"] for i in inputs]
    if not unit or re.search(r"compute|megapixel|token", unit):
        return {"by": "unknown"}
    if "character" in unit:
        field = next((n for n in TEXT_FIELDS if n in names and inputs[names.index(n)]["kind"] in
                      ("text", "multiline")), None)
        return {"by": "characters", "field": field} if field else {"by": "unknown"}
    if re.search(r"second|minute", unit):
        duration = next((n for n in DURATION_FIELDS if n in names and inputs[names.index(n)]["kind"] in
                         ("int", "float")), None)
        if duration:
            return {"by": "seconds", "field": duration, **({"scale": 0.001} if duration.endswith("_ms") else {})}
        clip = next((i["socket"] for i in inputs if i["kind"] == "audio" and i["fal"].get("required")), None)
        if clip and not any(o["kind"] in ("audio", "audio_list") for o in outputs) or \
                clip and source.get("fal_category") in ("speech-to-speech", "audio-to-audio"):
            return {"by": "input", "socket": clip}
        return {"by": "output"}
    if unit.rstrip("s") in PER_REQUEST or unit in ("audios", "generations", "units", "videos", "cloned voices"):
        return {"by": "request"}
    return {"by": "unknown"}


def spec(endpoint: str, source: dict) -> dict:
    taken = set(source["inputs"]) | {"seed", "takes", "fal_client", "unique_id", "response_json"}
    inputs, seed = [], None
    for name, field in source["inputs"].items():
        if name == "seed" and field["type"] in ("integer", "number"):
            seed = {k: field[k] for k in ("maximum",) if k in field}
            continue
        if name in NEVER_SENT and not field.get("required"):
            continue
        item = _input(name, field, taken)
        taken.add(item.get("socket") or item.get("widget") or name)
        inputs.append(item)
    outputs = [_output(name, field) for name, field in source["outputs"].items()]
    timed = next((o["name"] for o in outputs if _timed_words(o["fal"])), None)
    if timed and "srt" not in source["outputs"]:  # timed words: subtitles too, as a STRING output
        outputs.append({"name": "srt", "kind": "srt", "from": timed})
    found = {"class": class_name(endpoint), "name": display_name(endpoint, source), "task": task(endpoint, source),
             "title": source["title"], "fal_category": source.get("fal_category", ""), "inputs": inputs,
             "outputs": outputs, "price": {**(source.get("price") or {}),
                                            "counted": _counted(source, inputs, outputs)}}
    if seed is not None:
        found["seed"] = seed
    if endpoint in CURATED:
        found["curated"] = CURATED[endpoint]
    if endpoint in SUCCESSORS:
        found["successor"] = SUCCESSORS[endpoint]
    return found


def excluded_reason(endpoint: str, source: dict) -> str:
    if source.get("fal_category") in NOT_A_NODE:
        return NOT_A_NODE[source["fal_category"]]
    if STREAMING.search(endpoint):
        return STREAM_REASON
    if "inputs" not in source:
        return NO_SCHEMA_REASON
    return ""


def build(sources: dict, previous: dict = None) -> dict:
    """The catalog from the sources; entries of `previous` the sources no longer list stay, deprecated."""
    endpoints, excluded = {}, {}
    for endpoint, source in sorted(sources.items()):
        reason = excluded_reason(endpoint, source)
        if reason:
            excluded[endpoint] = {"title": source["title"], "fal_category": source.get("fal_category", ""),
                                  "reason": reason}
        else:
            endpoints[endpoint] = spec(endpoint, source)
    for endpoint, old in ((previous or {}).get("endpoints") or {}).items():
        if endpoint not in endpoints and endpoint not in excluded:
            gone = dict(old, task="deprecated", deprecated=True)
            if endpoint in SUCCESSORS:
                gone["successor"] = SUCCESSORS[endpoint]
            endpoints[endpoint] = gone
    names = [s["class"] for s in endpoints.values()]
    clashes = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(CURATED.values()) - {
        s["curated"] for s in endpoints.values() if "curated" in s}))
    if clashes:
        raise SystemExit(f"class names clash: {clashes}")
    shown = [s["name"] for s in endpoints.values() if "curated" not in s]
    if len(shown) != len(set(shown)):
        raise SystemExit(f"display names clash: {sorted({n for n in shown if shown.count(n) > 1})}")
    # Canonical: object keys sorted as in the file, so what is generated now equals what the file gives later.
    endpoints = json.loads(json.dumps(endpoints, sort_keys=True))
    return {"_about": "Every fal audio endpoint's spec, generated by scripts/catalog.py (do not edit by hand). "
                      "Endpoints without a curated node become generated nodes (nodes/catalog.py); 'excluded' "
                      "lists those that cannot be a queue node, with the reason.",
            "endpoints": endpoints, "excluded": excluded}


# -- output --------------------------------------------------------------------------------------

def dumps(catalog: dict) -> str:
    """Deterministic, compact, one endpoint per line (readable diffs)."""
    def line(value):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    parts = ['{"_about":' + line(catalog["_about"])]
    for section in ("endpoints", "excluded"):
        rows = [f"{line(k)}:{line(v)}" for k, v in sorted(catalog[section].items())]
        parts.append(f'"{section}":{{\n' + ",\n".join(rows) + "\n}")
    return ",\n".join(parts) + "}\n"


def diff(old: dict, new: dict) -> str:
    before, after = (old or {}).get("endpoints", {}), new["endpoints"]
    lines = []
    for endpoint in sorted(set(before) | set(after)):
        if endpoint not in before:
            lines.append(f"new      {endpoint}  {after[endpoint]['name']}")
        elif after[endpoint].get("deprecated") and not before[endpoint].get("deprecated"):
            successor = after[endpoint].get("successor")
            lines.append(f"gone     {endpoint}  (kept, deprecated" + (f"; successor {successor})" if successor
                                                                       else ")"))
        elif before[endpoint] != after[endpoint]:
            keys = sorted(k for k in set(before[endpoint]) | set(after[endpoint])
                          if before[endpoint].get(k) != after[endpoint].get(k))
            lines.append(f"changed  {endpoint}  ({', '.join(keys)})")
    return "\n".join(lines) or "no change"


def generated(catalog: dict) -> list:
    return [(e, s) for e, s in sorted(catalog["endpoints"].items()) if "curated" not in s]


def return_sockets(spec_: dict) -> tuple:
    kinds = {"audio": "AUDIO", "audio_list": "AUDIO", "video": "VIDEO", "video_list": "VIDEO", "text": "STRING",
             "url": "STRING", "srt": "STRING"}
    outs = [(o["name"], kinds[o["kind"]]) for o in spec_["outputs"] if o["kind"] in kinds]
    return tuple(t for _, t in outs) + ("STRING",), tuple(n for n, _ in outs) + ("response_json",)


def index_source(catalog: dict) -> str:
    """The generated nodes the pack registers at import: [class, endpoint, display name, task, return types,
    return names] per line (JSON: read in well under a millisecond, nothing to compile on a first start)."""
    rows = [json.dumps([s["class"], endpoint, s["name"], s["task"], *return_sockets(s)], ensure_ascii=False)
            for endpoint, s in generated(catalog)]
    return "[\n" + ",\n".join(rows) + "\n]\n"


def _money(value: float) -> str:
    return f"${value:.6f}".rstrip("0").rstrip(".") if value < 0.01 else f"${value:,.4f}".rstrip("0").rstrip(".")


COUNTED = {"request": "each request (each take) is billed once",
           "seconds": "billed by the seconds `{field}` asks for",
           "output": "billed by the length of the audio fal returns (known after the run)",
           "characters": "billed by the characters of `{field}`",
           "input": "billed by the length of the `{socket}` clip",
           "unknown": "not estimable before the run"}
EXAMPLES = {"music": "stable_audio_25_text_then_audio_to_audio.json", "sound effects":
            "elevenlabs_sfx_v2_loop_under_video.json", "speech": "minimax_speech_to_save_audio.json",
            "voice": "voice_isolation_to_save_audio.json", "transcription":
            "demucs_vocals_wizper_lyrics_ace_step_edit.json", "separation and cleanup":
            "demucs_drums_bass_merge_to_save_audio.json", "video to audio": "mmaudio_video_soundtrack.json",
            "deprecated": "any_endpoint_calls_lyria3.json"}


def help_page(endpoint: str, s: dict) -> str:
    """web/docs/<ClassName>.md of a generated node: its input list rendered from the spec the node is rendered from
    (nodes/catalog.py's spec_of), as a curated node's is."""
    types, names = return_sockets(s)
    outs = ", ".join(f"`{n}` ({t})" for t, n in zip(types, names))
    price = s["price"]
    counted = COUNTED[price["counted"]["by"]].format(**price["counted"])
    unit = price.get("unit", "") if price.get("unit", "")[:1].isdigit() else re.sub(r"s$", "", price.get("unit", ""))
    cost = (f"**{_money(price['unit_price'])} per {unit}** (fal's pricing API, seen {price.get('seen')}); "
            f"{counted}." if price.get("unit_price") is not None else
            "No published price is known to the pack: the node says the price is unknown, and a run is refused "
            "while a daily spend limit is set.")
    if price.get("unit_price") is not None and price["counted"]["by"] == "unknown":
        cost += " The estimate shows `≈$?`; with a daily spend limit set the run is refused."
    deprecated = ("\n**Deprecated**: fal no longer lists this endpoint; a run fails at once on fal's 404"
                  + (f" and names `{s['successor']}`" if s.get("successor") else "") + ".\n") if s.get(
        "deprecated") else ""
    return (f"# {s['name']}\n\nfal's **{s['title']}** (`{endpoint}`), a node generated from fal's schema "
            f"(category *audio/fal/{s['task']}*).\n{deprecated}\n"
            + curated_inputs(pack("nodes.catalog").spec_of(endpoint, s)) + "## Outputs\n\n" + outs
            + (". `srt`: the timed words as SRT subtitles (a cue per sentence, at most 8 words, a new cue when the "
               "speaker changes or after a pause of over 1 s)" if any(o["kind"] == "srt" for o in s["outputs"]) else "")
            + ". Audio files come out as AUDIO (a list of files as one batch, takes batched); `response_json` is "
            "fal's whole response (the first take's, or a list for several takes).\n\n## Cost\n\n" + cost
            + " Every paid result is kept and re-running with the same inputs and seed costs nothing.\n\n"
            "## A chain it fits in\n\nSee an example of its kind (Workflow → Browse Templates → fal Audio): "
            f"`{EXAMPLES[s['task']]}`.\n\n## On fal\n\nModel page: https://fal.ai/models/{endpoint} "
            f"(endpoint `{endpoint}`).\n")


def doc_tables(catalog: dict) -> str:
    rows = ["| node | endpoint | category | price |", "|---|---|---|---|"]
    for endpoint, s in generated(catalog):
        p = s["price"]
        price = f"{_money(p['unit_price'])}/{p['unit']}" if p.get("unit_price") is not None else "unknown"
        rows.append(f"| {s['name']} (`{s['class']}`) | `{endpoint}` | {s['task']} | {price} |")
    skipped = ["| endpoint | fal's title | why it has no node |", "|---|---|---|"]
    skipped += [f"| `{e}` | {x['title']} | {x['reason']} |" for e, x in sorted(catalog["excluded"].items())]
    curated = sorted((s["curated"], e) for e, s in catalog["endpoints"].items() if "curated" in s)
    return (f"### Generated nodes ({len(rows) - 2})\n\n" + "\n".join(rows)
            + f"\n\n### Endpoints with a curated node ({len(curated)})\n\n"
            + ", ".join(f"`{e}` ({c})" for c, e in curated)
            + f"\n\n### Endpoints that cannot be a node ({len(skipped) - 2})\n\n" + "\n".join(skipped) + "\n")


MARK = "<!-- generated by scripts/catalog.py: tables below -->"


SOCKETS = {"audio": "AUDIO socket", "image": "IMAGE socket", "video": "VIDEO socket",
           "audio_list": "AUDIO socket (a batch)", "image_list": "IMAGE socket (a batch)", "video_list": "VIDEO socket"}


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000 else \
        f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def curated_inputs(spec: dict) -> str:
    """The '## Inputs' section of a curated node's help page, from its spec (data/nodes/*.json): inputs in the
    node's order (required, seed and takes, optional, the fal Client socket)."""
    def row(item):
        kind = item["kind"]
        if kind in SOCKETS:
            default, span = "–", ""
        else:
            default = item.get("default", "" if kind in ("text", "multiline", "json", "url") else False)
            default = "empty" if default == "" else f"`{default}`" if isinstance(default, str) else \
                f"`{json.dumps(default)}`"
            if "unset" in item and item.get("default") == item["unset"]:
                default = "not set" if isinstance(item["unset"], str) else f"{default} (not set)"
            stated = "schema" not in item or {"minimum", "maximum"} & set(item["schema"])
            span = (f"{_cell(item['min'])} – {_cell(item['max'])}" if "min" in item and stated else "" if "min" in item else
                    ", ".join(f"`{o}`" for o in item["options"][:8]) + (", …" if len(item["options"]) > 8 else "")
                    if kind == "choice" else f"at most {item['max_length']:,} characters" if "max_length" in item
                    else "")
            if isinstance(item.get("unset"), (int, float)) and not isinstance(item["unset"], bool) and "min" in item:
                span += f" (or {_cell(item['unset'])}: not set)"
        need = ("optional" if item.get("optional") else "required" if item.get("required") or kind in SOCKETS
                else "advanced" if item.get("advanced") else "")
        kinds = {"text": "text", "multiline": "text", "int": "int", "float": "float", "bool": "boolean",
                 "choice": "choice", "json": "JSON text", "url": "file URL (text)", **SOCKETS}
        return (f"| `{item['name']}` | {kinds[kind]} | {default} | {span} | {need} | "
                f"{item.get('tooltip', '').replace('|', chr(92) + '|')} |")

    seeded = "seed" in spec
    seed_max = spec.get("seed", {}).get("maximum", 2 ** 31 - 1)
    rows = [row(i) for i in spec["inputs"] if not i.get("optional")]
    rows.append(f"| `seed` | int | `0` | 0 – {seed_max:,} | | " + (
        "Sent to the model as its seed." if seeded else "This model takes no seed; another value asks for a new take.")
        + " Same inputs and seed reuse the kept result at no cost. |")
    rows.append("| `takes` | int | `1` | 1 – 8 | | How many takes (separate paid requests) to make at once, returned "
                "as one batch. |")
    rows += [row(i) for i in spec["inputs"] if i.get("optional")]
    rows.append("| `fal_client` | FAL_CLIENT socket | – | | optional | Call options from a fal Client node "
                "(credentials profile, timeouts, where results are kept). Unconnected: FAL_KEY and the defaults. |")
    return ("## Inputs\n\n| input | kind | default | range / options | | what it changes |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\nEmpty text and *not set* values are not sent: fal applies its own default. Every "
            "range, option and length here is checked before anything is uploaded or paid. `seed`'s *control after "
            "generate* is **fixed** by default: queueing the same workflow again returns the kept result and never "
            "pays twice.\n\n")


def curated_pages() -> dict:
    """Each curated node's help page with its '## Inputs' section rendered from its spec (the rest is hand-written)."""
    files = {}
    for path in sorted(NODE_SPECS.glob("*.json")):
        for name, spec in json.loads(path.read_text(encoding="utf-8")).items():
            page = DOCS / f"{name}.md"
            text = page.read_text(encoding="utf-8")
            head, _, rest = text.partition("## Inputs\n")
            tail = rest[rest.index("\n## "):].lstrip("\n") if "\n## " in rest else ""
            files[page] = head + curated_inputs(spec) + tail
    return files


def outputs_of(catalog: dict) -> dict:
    """Every file the script writes: path -> text."""
    files = {CATALOG: dumps(catalog), INDEX: index_source(catalog), **curated_pages()}
    for endpoint, s in generated(catalog):
        files[DOCS / f"{s['class']}.md"] = help_page(endpoint, s)
    head = DOC.read_text(encoding="utf-8").split(MARK)[0] if DOC.exists() else "# The catalog\n\n"
    files[DOC] = head.rstrip("\n") + "\n\n" + MARK + "\n\n" + doc_tables(catalog)
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-fal", action="store_true", help="read fal's model list and OpenAPI schemas")
    parser.add_argument("--registry", type=Path, default=REGISTRY, help="the registry snapshot (offline source)")
    parser.add_argument("--api", default=FAL_API, help=argparse.SUPPRESS)  # tests: a local fake of fal's API
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    previous = json.loads(CATALOG.read_text(encoding="utf-8")) if CATALOG.exists() else None
    sources = from_fal(os.environ.get("FAL_KEY", ""), args.api) if args.from_fal else from_registry(args.registry)
    catalog = build(sources, previous)
    files = outputs_of(catalog)
    stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}")
        return 1 if stale else 0
    print(diff(previous, catalog))
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    print(f"{len(generated(catalog))} generated nodes, {len(catalog['excluded'])} endpoints excluded; "
          f"wrote {len(stale)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
