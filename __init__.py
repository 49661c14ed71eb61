"""fal Audio: fal.ai's hosted audio models as ComfyUI nodes.

ComfyUI imports this file as a package named after its folder (any name works): all
imports inside the pack are relative, and nothing heavy is imported here.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
