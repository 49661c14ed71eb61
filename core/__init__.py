"""core: the leaf helpers every other package uses.

Errors that name model and field (errors), the one place that knows secrets and scrubs them (secrets),
logging that never carries a secret (log), ComfyUI's hooks (comfy: interrupt, progress, folders; quiet
outside ComfyUI), asyncio steps that must not be cut short and caches kept per event loop (aio), the one TLS
context (tls), and the checks of what a user typed before anything is paid: widget values (validate), JSON
text (json_text), JSON against a model's declared structure (schema).

May import: nothing of the pack beyond core. Nothing heavy at import (ComfyUI imports every pack at start-up):
core.comfy is imported when the nodes are declared, and reaches ComfyUI's own modules only when called.
"""
