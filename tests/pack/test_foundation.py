"""Issue 2: the pack loads like a ComfyUI pack, and Lyria 2 / ACE-Step run end to end."""

import subprocess
import sys
import time

import pytest
import torch

from support import CANARY_KEY, PACK_DIR, defaults, pack_module, run_node

LYRIA = "FalAudioLyria2"
ACE = "FalAudioAceStep"


def test_pack_registers_every_node_under_audio_fal(nodes, pack):
    assert "FalAudioClient" in nodes and LYRIA in nodes and ACE in nodes
    for name, cls in nodes.items():
        assert cls.CATEGORY == "audio/fal" or cls.CATEGORY.startswith("audio/fal/")  # generated: by task
        assert name in pack.NODE_DISPLAY_NAME_MAPPINGS
        spec = cls.INPUT_TYPES()
        for section in spec.get("required", {}), spec.get("optional", {}):
            for field, (kind, *options) in section.items():
                assert options and options[0].get("tooltip"), f"{name}.{field} has no tooltip"
    assert nodes[LYRIA].ENDPOINT == "fal-ai/lyria2" and nodes[ACE].ENDPOINT == "fal-ai/ace-step"


def test_import_is_relative_and_light():
    """Import as ComfyUI does, under a hyphenated folder name, without ComfyUI present:
    no heavy module is imported at start-up."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('my-fal-pack', r'{PACK_DIR / '__init__.py'}')\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['my-fal-pack'] = m; spec.loader.exec_module(m)\n"
        "heavy = [n for n in ('fal_client', 'httpx', 'av', 'torch', 'numpy') if n in sys.modules]\n"
        "print(len(m.NODE_CLASS_MAPPINGS), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    count, heavy = out.stdout.split(" ", 1)
    assert int(count) >= 3 and heavy.strip() == "[]"


def test_seed_defaults_to_fixed_after_generate(nodes):
    for name, cls in nodes.items():
        seed = cls.INPUT_TYPES()["required"].get("seed")
        if seed:
            assert seed[0] == "INT" and seed[1]["control_after_generate"] == "fixed", name


def test_lyria_end_to_end(fal, nodes, comfy):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=2.0, rate=48000, channels=2))
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="ambient river, gentle piano", seed=7))
    assert [s.payload for s in fal.submissions] == [
        {"prompt": "ambient river, gentle piano", "negative_prompt": "low quality", "seed": 7}]
    waveform = audio["waveform"]
    assert audio["sample_rate"] == 48000
    assert waveform.dtype == torch.float32 and waveform.device.type == "cpu" and waveform.is_contiguous()
    assert tuple(waveform.shape) == (1, 2, 96000)
    assert waveform.abs().max() <= 1.0
    # Content: channel 0 is a 440 Hz sine of amplitude 0.5.
    spectrum = torch.fft.rfft(waveform[0, 0]).abs()
    assert abs(int(spectrum.argmax()) / 2.0 - 440) < 2
    assert 0.45 < float(waveform[0, 0].abs().max()) < 0.55


def test_ace_step_outputs_audio_tags_lyrics_seed(fal, nodes):
    def handler(payload):
        return {**fal.file_result(seconds=1.0, rate=44100, channels=2, fmt="flac"),
                "seed": payload["seed"], "tags": payload["tags"], "lyrics": "[inst]"}

    fal.set_handler("fal-ai/ace-step", handler)
    audio, tags, lyrics, seed = run_node(nodes[ACE], **defaults(nodes[ACE], tags="lofi, chill", seed=42))
    assert fal.submissions[0].payload == {
        "tags": "lofi, chill", "duration": 60.0, "number_of_steps": 27, "scheduler": "euler",
        "guidance_type": "apg", "granularity_scale": 10, "guidance_interval": 0.5, "guidance_interval_decay": 0.0,
        "guidance_scale": 15.0, "minimum_guidance_scale": 3.0, "tag_guidance_scale": 5.0,
        "lyric_guidance_scale": 1.5, "seed": 42}
    assert (tags, lyrics, seed) == ("lofi, chill", "[inst]", 42)
    assert audio["sample_rate"] == 44100 and tuple(audio["waveform"].shape) == (1, 2, 44100)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_decodes_every_format_and_layout(fal, nodes, fmt, channels):
    fal.set_handler("fal-ai/lyria2", lambda p: fal.file_result(seconds=1.0, rate=32000, channels=channels, fmt=fmt))
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"))
    w = audio["waveform"]
    assert audio["sample_rate"] == 32000 and w.shape[:2] == (1, channels) and w.dtype == torch.float32
    assert abs(w.shape[-1] - 32000) <= 2000  # mp3 adds encoder padding
    assert w.abs().max() <= 1.0 and w.abs().max() > 0.3


def test_progress_shows_queue_running_log_and_download(fal, nodes, comfy):
    fal.set_timing("fal-ai/lyria2", queue_seconds=0.6, run_seconds=0.6, queue_position=2, logs=["Sampling 50%"])
    run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"), unique_id="17")
    texts = comfy.texts()
    assert all(node_id == "17" for node_id, _ in comfy.progress_texts)
    assert any(t.startswith("In queue (position") for t in texts)
    assert any(t.startswith("Running") and "Sampling 50%" in t for t in texts)
    assert any(t.startswith("Downloading") for t in texts)
    assert comfy.progress_values and max(comfy.progress_values) >= 90


def test_cancel_reaches_fal_within_a_second(fal, nodes, comfy):
    fal.set_timing("fal-ai/lyria2", run_seconds=30)
    pressed = comfy.cancel_once_submitted(fal)
    with pytest.raises(comfy.InterruptProcessingException):
        run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"))
    assert time.monotonic() - pressed["at"] < 1.0
    assert fal.cancels == [fal.submissions[0].request_id]


def test_422_names_model_and_field(fal, nodes):
    fal.fault("POST", r"queue\.fal\.run/fal-ai/ace-step$", status=422, body={"detail": [
        {"loc": ["body", "duration"], "msg": "ensure this value is less than or equal to 240", "type": "value_error"}]})
    with pytest.raises(Exception) as caught:
        run_node(nodes[ACE], **defaults(nodes[ACE], tags="rock"))
    assert str(caught.value) == ("fal-ai/ace-step rejected the input: duration: ensure this value is less than or "
                                 "equal to 240")


def test_refused_key_says_how_to_set_it(fal, nodes):
    fal.set_key("other-key-id:other-secret")
    with pytest.raises(Exception) as caught:
        run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"))
    message = str(caught.value)
    assert "refused the API key" in message and "FAL_KEY" in message and "HTTP 401" in message
    assert CANARY_KEY not in message


def test_stuck_in_queue_is_cancelled_with_a_clear_message(fal, nodes):
    fal.set_timing("fal-ai/lyria2", stuck_in_queue=True)
    client = run_node(nodes["FalAudioClient"], profile="", queue_timeout=0.5, overall_timeout=60.0, output_dir="")[0]
    with pytest.raises(TimeoutError) as caught:
        run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"), fal_client=client)
    assert "no fal runner picked the request up" in str(caught.value) and "out of credits" in str(caught.value)
    assert fal.cancels == [fal.submissions[0].request_id]


def test_upload_of_an_audio_input_decodes_back_to_the_clip(fal, comfy):
    job = pack_module("jobs.job")
    audio = pack_module("media.audio")
    t = torch.linspace(0, 1, 16000)
    clip = {"waveform": torch.stack([torch.sin(2 * torch.pi * 300 * t), 0.5 * torch.sin(2 * torch.pi * 600 * t)])
            .unsqueeze(0) * 0.8, "sample_rate": 16000}
    upload = job.Upload.from_clip(clip)
    gateway = pack_module("transport.gateway").Gateway(CANARY_KEY)
    import asyncio
    url = asyncio.run(gateway.upload(upload.data, upload.content_type, upload.file_name))
    assert fal.uploads[0].url == url and fal.uploads[0].content_type == "audio/wav"
    back = audio.decode(fal.uploads[0].data)
    assert back["sample_rate"] == 16000 and back["waveform"].shape == clip["waveform"].shape
    assert torch.allclose(back["waveform"], clip["waveform"], atol=1.0 / 16000)


def test_completion_is_seen_from_the_status_stream_without_polling(fal, nodes):
    fal.set_timing("fal-ai/lyria2", queue_seconds=0.3, run_seconds=1.0)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5))
    started = time.monotonic()
    run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"))
    assert time.monotonic() - started < 1.3 + 0.25 + 0.5  # queue + run + noticed + download/decode
    paths = [path for _, path in fal.requests]
    assert sum(p.endswith("/status/stream") for p in paths) == 1
    assert sum(p.endswith("/status") for p in paths) == 0


def test_broken_status_stream_falls_back_to_polling(fal, nodes):
    fal.fault("GET", r"/status/stream$", status=500, body={"detail": "no streams today"})
    fal.set_timing("fal-ai/lyria2", run_seconds=0.6)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5))
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"))
    assert audio["waveform"].shape[-1] == 22050
    polls = [p for _, p in fal.requests if p.endswith("/status")]
    assert 2 <= len(polls) <= 0.6 * 10 + 2  # a few polls a second, not a busy loop


def test_a_silent_status_stream_cannot_hide_completion(fal, nodes, monkeypatch):
    """A proxy that buffers the event stream: the job still finishes, via a direct status check."""
    monkeypatch.setattr(pack_module("jobs.waiting"), "QUIET_POLL", 0.5)
    fal.fault("GET", r"/status/stream$", delay=30)  # the stream never says anything
    fal.set_timing("fal-ai/lyria2", run_seconds=0.2)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5))
    started = time.monotonic()
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x"))
    assert audio["waveform"].shape[-1] == 22050 and time.monotonic() - started < 3.0


def test_connections_of_finished_prompts_are_released(fal, nodes):
    """ComfyUI may run each prompt in a new event loop: clients of closed loops must not pile up."""
    gateway = pack_module("transport.gateway")
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.2))
    for seed in range(3):
        run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x", seed=seed))
    assert len(gateway._http_clients) <= 1 and len(gateway._clients) <= 1


def test_no_node_is_a_comfy_partner_node(nodes):
    # API_NODE marks Comfy's own credit-billed partner nodes: the newest frontend files them under "API nodes"
    # and replaces Run with "Sign in to run partner nodes". Ours are billed to the user's own fal key.
    flagged = sorted(name for name, cls in nodes.items() if getattr(cls, "API_NODE", False))
    assert flagged == []


def test_outside_comfyui_the_hooks_look_for_it_on_disk_once_and_find_it_once_loaded(monkeypatch):
    """Every wait step asks for ComfyUI's interrupt flag: outside ComfyUI (scripts, tests, the bench) a failed
    import scans sys.path each time, so a missing ComfyUI is remembered until something loads it."""
    import importlib
    import types

    comfy = pack_module("core.comfy")
    looked = []

    def import_module(name):
        looked.append(name)
        raise ImportError(name)

    monkeypatch.setattr(comfy, "_missing", set())
    monkeypatch.setattr(comfy.importlib, "import_module", import_module)
    for name in [n for n in list(importlib.sys.modules) if n == "comfy" or n.startswith("comfy.")]:
        monkeypatch.delitem(importlib.sys.modules, name)
    for _ in range(50):
        comfy.throw_if_interrupted()
    assert looked == ["comfy.model_management"]

    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted()

    monkeypatch.setitem(importlib.sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(importlib.sys.modules, "comfy.model_management", types.SimpleNamespace(
        throw_exception_if_processing_interrupted=interrupted, InterruptProcessingException=Interrupted))
    with pytest.raises(Interrupted):
        comfy.throw_if_interrupted()  # ComfyUI loaded later is found
