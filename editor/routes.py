"""The pack's HTTP routes on ComfyUI's server, for its web extension (web/js/).

POST /fal_audio/estimate  {"nodes": [{"id", "type", "widgets": {name: value}}]}
  -> {"estimates": {id: {"text", "usd", "per_request_usd", "takes", "unit_price", "unit", "source",
                         "endpoint", "billed_by"}}}
The price badge on every paid node is fed from here. Prices are looked up on the server with the
user's key; the answer holds prices and their sources only, never the key.

Registered only when ComfyUI's PromptServer is running (it is created before custom nodes load);
outside ComfyUI (tests, scripts) register() does nothing.
"""

import json
import sys

ESTIMATE_PATH = "/fal_audio/estimate"
MAX_BODY = 1 << 20


def register(node_classes: dict) -> bool:
    server = sys.modules.get("server")  # ComfyUI's own module, already imported when it loads custom nodes
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    routes = getattr(instance, "routes", None)
    if routes is None or not hasattr(routes, "post"):
        return False
    if getattr(instance, "_fal_audio_routes", False):
        return True
    routes.post(ESTIMATE_PATH)(make_handler(node_classes))
    instance._fal_audio_routes = True
    return True


def make_handler(node_classes: dict):
    async def estimate(request):
        from aiohttp import web

        status, body = await answer(node_classes, await request.read())
        return web.json_response(body, status=status)

    return estimate


async def answer(node_classes: dict, raw: bytes) -> tuple:
    """(HTTP status, JSON body) for a badge request."""
    from ..core.secrets import redact
    from ..jobs.spend import badges

    if len(raw) > MAX_BODY:
        return 413, {"error": "request too large"}
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return 400, {"error": "expected JSON: {\"nodes\": [{\"id\", \"type\", \"widgets\"}]}"}
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        return 400, {"error": "expected JSON: {\"nodes\": [{\"id\", \"type\", \"widgets\"}]}"}
    try:
        estimates = await badges(node_classes, nodes)
    except Exception as exc:  # noqa: BLE001 - a badge must never break the editor
        from ..core.log import get_logger

        get_logger("routes").warning("price badges could not be computed (%s)", type(exc).__name__)
        return 500, {"error": "price badges could not be computed"}
    # Belt and braces: nothing in the answer may carry a secret.
    return 200, json.loads(redact(json.dumps({"estimates": estimates})))
