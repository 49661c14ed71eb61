"""Small single-purpose helpers behind the fal Audio nodes.

Nothing here imports heavy modules (fal_client, httpx, av, torch) at import time:
ComfyUI imports every custom-node pack at start-up and users feel each millisecond.
"""
