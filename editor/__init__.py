"""editor: what the pack adds to ComfyUI's server for its web extension (web/js/).

The HTTP routes (routes: the price badges the editor shows on paid nodes; panel: the fal panel's spend,
requests in flight with Cancel, and recent results; body: reading a request body without buffering a huge one).

May import: core, media, transport, money, jobs. routes is imported when the nodes are declared, so it is
the boundary that defers: it imports what a request needs inside the handler, never at import.
"""
