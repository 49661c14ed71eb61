"""The pack's HTTP routes on ComfyUI's server, for its web extension (web/js/).

POST /fal_audio/estimate  {"nodes": [{"id", "type", "widgets": {name: value}}]}
  -> {"estimates": {id: {"text", "usd", "per_request_usd", "takes", "unit_price", "unit", "source",
                         "endpoint", "billed_by"} or {"error"}}}
The price badge on every paid node is fed from here. Prices are looked up on the server with the
user's key; the answer holds prices and their sources only, never the key. A node the server cannot
price (a type that is not a name, a widget value that is not a finite number, ...) gets {"error": why}
and the others their badges: one bad node never fails the whole graph. A body over 1 MB is refused
unread (413). The fal panel's routes are in editor/panel.py.

Registered only when ComfyUI's PromptServer is running (it is created before custom nodes load);
outside ComfyUI (tests, scripts) register() does nothing.
"""

import json
import math
import sys

ESTIMATE_PATH = "/fal_audio/estimate"
MAX_BODY = 1 << 20
MAX_ID = 100  # characters of a node id
TOO_LARGE = 413, {"error": "request too large"}
_SHAPE = "expected JSON: {\"nodes\": [{\"id\", \"type\", \"widgets\"}]}"


def register(node_classes: dict) -> bool:
    server = sys.modules.get("server")  # ComfyUI's own module, already imported when it loads custom nodes
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    routes = getattr(instance, "routes", None)
    if routes is None or not hasattr(routes, "post"):
        return False
    if getattr(instance, "_fal_audio_routes", False):
        return True
    routes.post(ESTIMATE_PATH)(make_handler(node_classes))
    from . import panel

    panel.register(instance)  # the fal panel's routes and pushed events (editor/panel.py)
    instance._fal_audio_routes = True
    return True


def make_handler(node_classes: dict):
    async def estimate(request):
        from aiohttp import web

        from ..core.log import own_requests
        from .body import read_body

        raw = await read_body(request, MAX_BODY)
        with own_requests():  # httpx does not log the price lookup (core/log.py)
            status, body = TOO_LARGE if raw is None else await answer(node_classes, raw)
        return web.json_response(body, status=status)

    return estimate


async def answer(node_classes: dict, raw: bytes) -> tuple:
    """(HTTP status, JSON body) for a badge request. A malformed node gets {"error"} as its entry; the others
    their badges."""
    from ..core.log import get_logger
    from ..core.secrets import redact
    from ..jobs.spend import MAX_BADGES, badges

    if len(raw) > MAX_BODY:
        return TOO_LARGE
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return 400, {"error": _SHAPE}
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        return 400, {"error": _SHAPE}
    estimates, wellformed = {}, []
    for item in nodes[:MAX_BADGES]:
        node_id = _node_id(item)
        if node_id is None:
            continue
        wrong = _malformed(item)
        if wrong:
            estimates[node_id] = {"error": wrong}
        else:
            wellformed.append({**item, "id": node_id})
    try:
        estimates.update(await badges(node_classes, wellformed))
    except Exception:  # noqa: BLE001 - a badge must never break the editor: find the node that fails
        for item in wellformed:
            try:
                estimates.update(await badges(node_classes, [item]))
            except Exception as exc:  # noqa: BLE001
                get_logger("routes").warning("the price badge of a %.80s node could not be computed (%s)",
                                             item.get("type"), type(exc).__name__)
                estimates[item["id"]] = {"error": "its price could not be computed"}
    for node_id, estimate in estimates.items():
        try:
            json.dumps(estimate, allow_nan=False)
        except ValueError:  # a number JSON has no word for (a duration of 1e308 s, ...): the browser could not read it
            estimates[node_id] = {"error": "its price is not a finite number"}
    # Belt and braces: nothing in the answer may carry a secret.
    return 200, json.loads(redact(json.dumps({"estimates": estimates})))


def _node_id(item):
    """The node's id as the answer names it (a missing one is "None"); None for an item that cannot be named."""
    if not isinstance(item, dict):
        return None
    node_id = item.get("id")
    if isinstance(node_id, bool) or not isinstance(node_id, (str, int, type(None))):
        return None
    node_id = str(node_id)
    return node_id if len(node_id) <= MAX_ID else None


def _malformed(item: dict) -> str:
    """What is wrong with a node of the request ("" if nothing)."""
    if not isinstance(item.get("type"), str):
        return "its type is not a node type name"
    widgets = item.get("widgets")
    for name, value in (widgets.items() if isinstance(widgets, dict) else ()):
        if isinstance(value, float) and not math.isfinite(value):
            return f"its widget {name[:40]!r} is {value}, not a finite number"
        if not isinstance(value, (str, int, float, bool, type(None))):
            return f"its widget {name[:40]!r} is not a string, number or boolean"
    return ""
