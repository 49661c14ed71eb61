"""Every node of the pack, registered under its class name.

The top of the pack: node files may import every package (core, media, transport, money, jobs). They are
imported when ComfyUI declares the nodes, so this is the boundary that defers: at import a node file takes only
core.comfy and its siblings here; everything else is imported inside the functions that run a node."""

from .any_endpoint import FalAnyEndpoint
from .catalog import NODE_CLASSES as GENERATED
from .client import FalClientNode
from .load_url import LoadAudioFromURL
from .result_by_id import FalResultByRequestID
from .spec import NODE_CLASSES as CURATED
from .spend import FalSpend
from .visualize import AudioToSpectrogram, AudioToWaveform

# Class names are prefixed so they cannot collide with other packs' node types.
_NODES = {
    "FalAudioClient": FalClientNode,
    "FalAudioWaveform": AudioToWaveform,
    "FalAudioSpectrogram": AudioToSpectrogram,
    "FalAudioLoadURL": LoadAudioFromURL,
    "FalAudioSpend": FalSpend,
    "FalAudioAnyEndpoint": FalAnyEndpoint,
    "FalAudioResultByRequestID": FalResultByRequestID,
    # The curated model nodes, declared in data/nodes/*.json (nodes/spec.py).
    **CURATED,
}

# Every catalog endpoint without a node above: generated from data/catalog.json (nodes/catalog.py).
_NODES.update(GENERATED)

NODE_CLASS_MAPPINGS = dict(_NODES)
NODE_DISPLAY_NAME_MAPPINGS = {name: cls.DISPLAY_NAME for name, cls in _NODES.items()}
