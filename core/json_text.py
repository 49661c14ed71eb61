"""JSON given as text in a widget (arguments, a composition plan): parsed before anything is paid."""

import json

from .errors import invalid


def parse_object(text: str, node: str, field: str) -> dict:
    """`text` as a JSON object; a clear error naming the line and column of a syntax error otherwise."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except _NotJSON as exc:
        raise invalid(node, field, f"is not valid JSON: {exc} is not a JSON value (fal takes none)") from None
    except json.JSONDecodeError as exc:
        raise invalid(node, field, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
                                   f"(character {exc.pos + 1})") from None
    except RecursionError:
        raise invalid(node, field, "nests arrays or objects deeper than the pack reads (Python's recursion limit, "
                                   "about 1000 levels)") from None
    if not isinstance(value, dict):
        raise invalid(node, field, f"must be a JSON object ({{\"name\": value, ...}}), got a JSON "
                                   f"{_kind(value)}")
    return value


class _NotJSON(ValueError):
    pass


def _no_constant(name: str):
    raise _NotJSON(name)  # NaN, Infinity, -Infinity: Python's json takes them, JSON does not


def _kind(value) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
