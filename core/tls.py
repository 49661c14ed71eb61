"""The process's one TLS context for fal's HTTPS connections (the gateway's clients and the pricing API's)."""

import os
import threading

_ssl_contexts: dict = {}
_ssl_lock = threading.Lock()


def ssl_context():
    """One TLS context for the whole process, whatever the event loop.

    Loading a real CA bundle takes ~30 ms, and an httpx client loads it once per transport
    (one per proxy route too: three with HTTPS_PROXY set). ComfyUI runs every prompt in a
    new event loop, where the per-loop clients are built again: without sharing, each
    prompt paid ~0.2 s of CA loading. Trusts what httpx trusts (SSL_CERT_FILE,
    SSL_CERT_DIR, else certifi), rebuilt only if those change.
    """
    import httpx

    where = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _ssl_lock:
        if where not in _ssl_contexts:
            _ssl_contexts[where] = httpx.create_ssl_context()
        return _ssl_contexts[where]
