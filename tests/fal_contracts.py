"""The emulator's strict input contracts: what fal would refuse with a 422.

``contracts.json`` (beside this file) holds, per endpoint, every input field with its
type, whether it is required, its enum and its documented range. :func:`violations`
checks a submitted payload against it and returns the errors in the shape fal's
(pydantic/FastAPI) apps answer with: ``{"loc": ["body", field, ...], "msg", "type"}``.

Types: string, number, integer, boolean, enum, file (a URL or data URI), array (items),
object (properties). Fields without a contract entry are refused (``extra_forbidden``).
An optional field without a default may be null; a field with a default may not, unless it is
marked ``nullable`` (fal documents null as a value of its own, e.g. "detect the language").
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

CONTRACTS_FILE = pathlib.Path(__file__).with_name("contracts.json")

_cache: dict[str, dict] | None = None


CATALOG_FILE = pathlib.Path(__file__).resolve().parent.parent / "data" / "catalog.json"


def load() -> dict[str, dict]:
    """endpoint id (lower case) -> {"input": {...}, "output": {...}}: contracts.json, and for every other
    endpoint of the pack's catalog (data/catalog.json) the contract its fal schema gives."""
    global _cache
    if _cache is None:
        found = {e: catalog_contract(s) for e, s in json.loads(CATALOG_FILE.read_text(encoding="utf-8"))[
            "endpoints"].items()}
        found.update(json.loads(CONTRACTS_FILE.read_text(encoding="utf-8"))["endpoints"])
        _cache = found
    return _cache


def _from_schema(schema: dict) -> dict:
    """A catalog (core/schema.py) schema -> a contract field."""
    kind = schema["type"]
    item: dict[str, Any] = {"type": "enum" if "enum" in schema else "any" if kind == "object" and "properties" not in
                            schema else kind, "required": bool(schema.get("required"))}
    for key in ("enum", "minimum", "maximum", "min_length", "max_length", "default"):
        if key in schema:
            item[key] = schema[key]
    if kind == "array":
        item["items"] = _from_schema(schema.get("items") or {"type": "any"})
    if item["type"] == "object":
        item["properties"] = {n: _from_schema(s) for n, s in schema["properties"].items()}
    return item


def catalog_contract(spec: dict) -> dict:
    """The input contract of a catalog spec: its fields' fal schemas, and the seed where the model takes one."""
    fields = {item["name"]: _from_schema(item["fal"]) for item in spec["inputs"]}
    if "seed" in spec:
        fields["seed"] = {"type": "integer", "required": False, **{k: v for k, v in spec["seed"].items()
                                                                    if k == "maximum"}}
    return {"source": "data/catalog.json", "input": fields, "output": {}}


def contract(endpoint: str) -> dict | None:
    return load().get(endpoint.strip("/").lower())


def _number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _error(loc: list, kind: str, msg: str, value: Any, **ctx: Any) -> dict:
    item = {"loc": ["body", *loc], "msg": msg, "type": kind, "input": value}
    if ctx:
        item["ctx"] = ctx
    return item


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(spec: dict, value: Any, loc: list) -> list[dict]:
    kind = spec["type"]
    if value is None and spec.get("nullable"):
        return []  # fal's description says null is meaningful here (e.g. Wizper's language: detect it)
    if value is None:
        if spec.get("required") or "default" in spec:
            return [_error(loc, "missing" if spec.get("required") else "none_forbidden",
                           "Field required" if spec.get("required") else "Input should not be None", value)]
        return []
    if kind == "any":
        return []
    if kind == "string":
        if not isinstance(value, str):
            return [_error(loc, "string_type", "Input should be a valid string", value)]
        if "min_length" in spec and len(value) < spec["min_length"]:
            n = spec["min_length"]
            return [_error(loc, "string_too_short", f"String should have at least {n} character{'s' * (n != 1)}",
                           value, min_length=n)]
        if "max_length" in spec and len(value) > spec["max_length"]:
            n = spec["max_length"]
            return [_error(loc, "string_too_long", f"String should have at most {n} characters", value,
                           max_length=n)]
        return []
    if kind == "file":
        if not isinstance(value, str):
            return [_error(loc, "string_type", "Input should be a valid string", value)]
        if not value.startswith(("https://", "http://", "data:")):
            return [_error(loc, "url_parsing", "Input should be a valid URL or data URI", value)]
        return []
    if kind == "boolean":
        if not isinstance(value, bool):
            return [_error(loc, "bool_type", "Input should be a valid boolean", value)]
        return []
    if kind in ("number", "integer"):
        if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
            what = "integer" if kind == "integer" else "number"
            return [_error(loc, f"{'int' if kind == 'integer' else 'float'}_type",
                           f"Input should be a valid {what}", value)]
        if kind == "integer" and isinstance(value, float) and not value.is_integer():
            return [_error(loc, "int_from_float", "Input should be a valid integer, got a number with a fractional "
                                                  "part", value)]
        if "minimum" in spec and value < spec["minimum"]:
            return [_error(loc, "greater_than_equal",
                           f"Input should be greater than or equal to {_number_text(spec['minimum'])}", value,
                           ge=spec["minimum"])]
        if "maximum" in spec and value > spec["maximum"]:
            return [_error(loc, "less_than_equal",
                           f"Input should be less than or equal to {_number_text(spec['maximum'])}", value,
                           le=spec["maximum"])]
        return []
    if kind == "enum":
        options = spec["enum"]
        # Literal["a", 1]: the JSON value must equal one option and have its type (no "1" for 1, no True for 1).
        if not any(value == o and type(value) is type(o) for o in options):
            shown = [repr(o) if isinstance(o, str) else str(o) for o in options]
            listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
            return [_error(loc, "literal_error", f"Input should be {listed}", value,
                           expected=", ".join(shown))]
        return []
    if kind == "array":
        if not isinstance(value, list):
            return [_error(loc, "list_type", "Input should be a valid list", value)]
        errors = []
        for index, item in enumerate(value):
            errors += _check({**spec["items"], "required": True}, item, [*loc, index])
        return errors
    if kind == "object":
        if not isinstance(value, dict):
            return [_error(loc, "model_type", f"Input should be a valid dictionary or instance of "
                                              f"{spec.get('name', 'object')}", value)]
        return _check_fields(spec["properties"], value, loc)
    raise AssertionError(f"contract type {kind!r} is not known")


def _check_fields(fields: dict, payload: dict, loc: list) -> list[dict]:
    errors = []
    for name, spec in fields.items():
        if name not in payload:
            if spec.get("required"):
                errors.append(_error([*loc, name], "missing", "Field required", payload))
            continue
        errors += _check(spec, payload[name], [*loc, name])
    for name in payload:
        if name not in fields:
            errors.append(_error([*loc, name], "extra_forbidden", "Extra inputs are not permitted", payload[name]))
    return errors


def violations(endpoint: str, payload: dict) -> list[dict] | None:
    """fal's 422 detail list for `payload`, [] if it is valid, or None if the endpoint has no contract."""
    found = contract(endpoint)
    if found is None:
        return None
    return _check_fields(found["input"], payload, [])
