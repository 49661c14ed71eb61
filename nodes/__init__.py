"""Every node of the pack, registered under its class name.

The top of the pack: node files may import every package (core, media, transport, money, jobs). They are
imported when ComfyUI declares the nodes, so this is the boundary that defers: at import a node file takes only
core.comfy and its siblings here; everything else is imported inside the functions that run a node."""

from .ace_step import (AceStepAudioInpaint, AceStepAudioOutpaint, AceStepAudioToAudio, AceStepPromptToAudio,
                       AceStepTextToAudio)
from .cassette import CassetteMusic, CassetteSoundEffects
from .client import FalClientNode
from .diffrhythm import DiffRhythm
from .elevenlabs import ElevenLabsSoundEffects
from .lyria import Lyria2
from .minimax import MiniMaxMusic
from .mmaudio import MMAudioTextToAudio
from .yue import YuE
from .video import MMAudioVideoToAudio
from .visualize import AudioToSpectrogram, AudioToWaveform
from .load_url import LoadAudioFromURL
from .spend import FalSpend
from .speech import ElevenLabsTTSv3, KokoroAmericanEnglish, MiniMaxSpeech28HD
from .stems import Demucs, ElevenLabsAudioIsolation
from .transcription import Wizper
from .elevenlabs_v2 import ElevenLabsMusic, ElevenLabsSoundEffectsV2
from .lyria3 import Lyria3
from .minimax_v26 import MiniMaxMusicV26
from .any_endpoint import FalAnyEndpoint
from .catalog import NODE_CLASSES
from .result_by_id import FalResultByRequestID
from .stable_audio import StableAudio25AudioToAudio, StableAudio25Inpaint, StableAudio25TextToAudio

# Class names are prefixed so they cannot collide with other packs' node types.
_NODES = {
    "FalAudioClient": FalClientNode,
    "FalAudioLyria2": Lyria2,
    "FalAudioAceStep": AceStepTextToAudio,
    "FalAudioAceStepPromptToAudio": AceStepPromptToAudio,
    "FalAudioAceStepInpaint": AceStepAudioInpaint,
    "FalAudioAceStepOutpaint": AceStepAudioOutpaint,
    "FalAudioAceStepAudioToAudio": AceStepAudioToAudio,
    "FalAudioCassetteMusic": CassetteMusic,
    "FalAudioCassetteSoundEffects": CassetteSoundEffects,
    "FalAudioDiffRhythm": DiffRhythm,
    "FalAudioElevenLabsSoundEffects": ElevenLabsSoundEffects,
    "FalAudioYuE": YuE,
    "FalAudioMMAudioTextToAudio": MMAudioTextToAudio,
    "FalAudioMiniMaxMusic": MiniMaxMusic,
    "FalAudioMMAudioVideoToAudio": MMAudioVideoToAudio,
    "FalAudioWaveform": AudioToWaveform,
    "FalAudioSpectrogram": AudioToSpectrogram,
    "FalAudioLoadURL": LoadAudioFromURL,
    "FalAudioSpend": FalSpend,
    "FalAudioElevenLabsTTSv3": ElevenLabsTTSv3,
    "FalAudioMiniMaxSpeech28HD": MiniMaxSpeech28HD,
    "FalAudioKokoroAmericanEnglish": KokoroAmericanEnglish,
    "FalAudioWizper": Wizper,
    "FalAudioDemucs": Demucs,
    "FalAudioElevenLabsAudioIsolation": ElevenLabsAudioIsolation,
    "FalAudioElevenLabsSoundEffectsV2": ElevenLabsSoundEffectsV2,
    "FalAudioElevenLabsMusic": ElevenLabsMusic,
    "FalAudioMiniMaxMusicV26": MiniMaxMusicV26,
    "FalAudioStableAudio25TextToAudio": StableAudio25TextToAudio,
    "FalAudioStableAudio25AudioToAudio": StableAudio25AudioToAudio,
    "FalAudioStableAudio25Inpaint": StableAudio25Inpaint,
    "FalAudioLyria3": Lyria3,
    "FalAudioAnyEndpoint": FalAnyEndpoint,
    "FalAudioResultByRequestID": FalResultByRequestID,
}

# Every catalog endpoint without a node above: generated from data/catalog.json (nodes/catalog.py).
_NODES.update(NODE_CLASSES)

NODE_CLASS_MAPPINGS = dict(_NODES)
NODE_DISPLAY_NAME_MAPPINGS = {name: cls.DISPLAY_NAME for name, cls in _NODES.items()}
