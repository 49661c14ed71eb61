"""Widget values a node's INPUT_TYPES declares, checked before anything is uploaded or paid.

ComfyUI checks a FLOAT widget's range with comparisons, which NaN passes (every comparison
with NaN is false), and it does not range-check values that arrive over a link. JSON from
the API or a pasted workflow can also carry lone UTF-16 surrogates ("\\ud800"), which
Python keeps in a str but no UTF-8 encoder, file or model can take.
"""

import math
import numbers

from .errors import invalid


def widgets(node: str, spec: dict, values: dict) -> None:
    """Refuse NaN/inf FLOATs and text that is not valid Unicode, naming the field. (A model node's ranges, lengths
    and required inputs are checked from its spec: nodes/spec.py.)"""
    for section in ("required", "optional"):
        for name, declaration in (spec.get(section) or {}).items():
            if name not in values or values[name] is None:
                continue
            kind = declaration[0]
            options = declaration[1] if len(declaration) > 1 and isinstance(declaration[1], dict) else {}
            if kind == "FLOAT":
                finite(node, name, values[name], options.get("min"), options.get("max"))
            elif kind == "STRING" or isinstance(kind, list):
                text(node, name, values[name])


def finite(node: str, field: str, value, minimum=None, maximum=None) -> float:
    """A finite number; the widget's range (either end may be None) is named in the refusal."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(node, field, f"must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        span = _span(minimum, maximum)
        raise invalid(node, field, f"is {value!r}, not a finite number" + (f"; give a number {span}" if span else ""))
    return value


def _span(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum:g} and {maximum:g}"
    if minimum is not None:
        return f"at least {minimum:g}"
    if maximum is not None:
        return f"at most {maximum:g}"
    return ""


def text(node: str, field: str, value) -> None:
    """Text that UTF-8 can encode: no lone surrogates (U+D800-U+DFFF)."""
    if not isinstance(value, str):
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(node, field, f"contains an invalid character (a lone surrogate, U+{ord(value[exc.start]):04X}, "
                                   f"at position {exc.start + 1}), which no model can read; retype that part of "
                                   "the text") from None
