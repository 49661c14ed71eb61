"""fal Audio: fal.ai's hosted audio models as ComfyUI nodes.

ComfyUI imports this file as a package named after its folder (any name works): all
imports inside the pack are relative, and nothing heavy is imported here.
"""

# Served by ComfyUI under /extensions/<folder name>/: help pages (docs/<NodeClass>.md) and web extensions.
WEB_DIRECTORY = "./web"

# Always true when ComfyUI (or tests/support.py) imports the pack. pytest also imports this file on its own,
# as a lone module, when the folder's name is no identifier (a clone named fal-audio): then it only reads it.
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from .core import comfy as _comfy

    _problem = _comfy.version_problem()
    if _problem:
        from .core.log import get_logger as _get_logger

        _get_logger("startup").warning(_problem)

    # The price badges' route (web/js/): only when ComfyUI's server is running, a no-op elsewhere.
    from .editor import routes as _routes

    _routes.register(NODE_CLASS_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
