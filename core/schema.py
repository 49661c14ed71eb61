"""Checking a JSON value against a model's declared structure (fal's generated types) before paying.

A schema is {"type": "object", "properties": {name: schema}}, {"type": "array", "items": schema},
{"type": "string" | "integer" | "number" | "boolean" | "file" (a URL) | "any"}, with "required" on
properties and optional "enum" (the values allowed), "minimum"/"maximum" (numbers),
"min_length"/"max_length" (strings) and "min_items"/"max_items" (arrays). An optional property
without a "default" may be null. The first problem found is returned as (path, rule), the path
written as in the JSON (sections[0].duration_ms).
"""

import json
from typing import Optional, Tuple


def _path(parent: str, key) -> str:
    return f"{parent}[{key}]" if isinstance(key, int) else (f"{parent}.{key}" if parent else key)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(value, schema: dict, path: str = "") -> Optional[Tuple[str, str]]:
    kind = schema["type"]
    where = path or "the value"
    if value is None and not schema.get("required") and "default" not in schema or kind == "any":
        return None
    if "enum" in schema:
        if any(value == option and type(value) is type(option) for option in schema["enum"]):
            return None
        shown = ", ".join(json.dumps(option) for option in schema["enum"][:12])
        return where, f"is {json.dumps(value)}, which is not one of {shown}" + (", ..." if len(schema["enum"]) > 12
                                                                                 else "")
    if kind == "file":
        ok = isinstance(value, str) and value.startswith(("https://", "http://", "data:"))
        return None if ok else (where, "must be a file URL (https://...)")
    if kind == "object":
        if not isinstance(value, dict):
            return where, "must be a JSON object"
        if "properties" not in schema:
            return None
        for name, spec in schema["properties"].items():
            if name not in value:
                if spec.get("required"):
                    return _path(path, name), "is required and missing"
                continue
            found = problem(value[name], spec, _path(path, name))
            if found:
                return found
        extra = sorted(set(value) - set(schema["properties"]))
        if extra:
            return _path(path, extra[0]), f"is not a field here (known: {', '.join(schema['properties'])})"
        return None
    if kind == "array":
        if not isinstance(value, list):
            return where, "must be a JSON array"
        if len(value) < schema.get("min_items", 0):
            return where, f"must have at least {schema['min_items']} item(s)"
        if "max_items" in schema and len(value) > schema["max_items"]:
            return where, f"has {len(value)} items; at most {schema['max_items']} are allowed"
        for index, item in enumerate(value):
            found = problem(item, {**schema["items"], "required": True}, _path(path, index))
            if found:
                return found
        return None
    if kind == "string":
        if not isinstance(value, str):
            return where, "must be a string"
        if len(value) < schema.get("min_length", 0):
            return where, f"must have at least {schema['min_length']} character(s)"
        if "max_length" in schema and len(value) > schema["max_length"]:
            return where, f"has {len(value)} characters; at most {schema['max_length']} are allowed"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else (where, "must be true or false")
    if kind in ("integer", "number"):
        if not _number(value) or (kind == "integer" and not float(value).is_integer()):
            return where, f"must be {'a whole number' if kind == 'integer' else 'a number'}"
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (f"{low:g}-{high:g}" if low is not None and high is not None
                      else f"at least {low:g}" if low is not None else f"at most {high:g}")
            return where, f"is {value:g}; it must be {bounds}"
        return None
    raise ValueError(f"unknown schema type {kind!r}")
