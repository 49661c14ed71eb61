"""Issue 9: every example workflow runs in a real ComfyUI through POST /prompt, against the fal emulator.

Each UI-format file in example_workflows/ is opened in the real editor (headless Chromium) and turned into the API
prompt the editor itself would send (app.graphToPrompt), so any workflow added there is covered. Checked: the run's
/history status, the files it wrote (decoded: they carry the emulator's tone), the kept originals, and the node
progress text that reached the websocket. Then Cancel (POST /interrupt) reaches fal, and a ComfyUI restart between
two identical prompts pays once.
"""

import json
import time

import pytest

from comfyui_harness import Events, PACK_FOLDER
from media import decode_audio, dominant_hz, make_input_files
from support import PACK_DIR, pack_module

pytestmark = pytest.mark.integration

EXAMPLES = sorted((PACK_DIR / "example_workflows").glob("*.json"))
# Pack model nodes already run on the session's server (class_type + widget inputs): ComfyUI's cache or the
# pack's journal may rightly answer those without a new request.
_ran = set()


def signature(node: dict) -> str:
    widgets = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
    return json.dumps([node["class_type"], widgets], sort_keys=True)


def model_nodes(prompt: dict, pack_nodes: dict) -> dict:
    """The prompt's nodes that make paid fal requests (every FalAudioNode, the any-endpoint node included)."""
    base = pack_module("nodes.base").FalAudioNode
    return {node_id: node for node_id, node in prompt.items()
            if isinstance(pack_nodes.get(node["class_type"]), type) and issubclass(pack_nodes[node["class_type"]], base)}


def endpoint_of(node: dict, pack_nodes: dict) -> str:
    return pack_nodes[node["class_type"]].ENDPOINT or node["inputs"].get("endpoint", "")


def takes_of(node: dict) -> int:
    takes = node["inputs"].get("takes", 1)
    return int(takes) if isinstance(takes, int) else 1


def output_files(server, entry: dict) -> list:
    files = []
    for node_output in entry["outputs"].values():
        for items in node_output.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    files.append(server.output_file(item))
    return files


_tones = {}


def returns_files(result) -> bool:
    """Whether fal's answer holds a file (a {"url": ...} anywhere in it)."""
    if isinstance(result, dict):
        return isinstance(result.get("url"), str) or any(returns_files(v) for v in result.values())
    if isinstance(result, list):
        return any(returns_files(v) for v in result)
    return False


def served_tones(server) -> set:
    """The dominant frequency of every file fal returned on this server (its kept originals)."""
    for kept in (server.base / "output" / "fal-audio").glob("*"):
        if kept not in _tones:
            try:
                _tones[kept] = round(dominant_hz(*decode_audio(kept)))
            except Exception:  # noqa: BLE001 - a kept file with no audio stream (an image, a text)
                _tones[kept] = None
    return {tone for path, tone in _tones.items() if tone is not None and path.parent.parent.parent == server.base}


def failure(entry: dict) -> str:
    return json.dumps([m for m in entry["status"].get("messages", []) if m[0] == "execution_error"], indent=1)[:4000]


def run(server, prompt: dict, timeout: float = 180.0):
    events = Events(server)
    try:
        prompt_id = server.queue(prompt, events.client_id)
        entry = server.history(prompt_id, timeout)
        time.sleep(0.3)  # the last progress text travels behind the history entry
        return entry, events
    finally:
        events.close()


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_through_post_prompt(path, server, editor, fal, pack_nodes, object_info):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    make_input_files(server, workflow, object_info)
    editor.load(workflow, path.stem)
    prompt = editor.to_api_prompt()
    assert prompt, f"{path.name}: the editor made an empty prompt"
    models = model_nodes(prompt, pack_nodes)
    assert models, f"{path.name} uses no fal model node"
    kept_before = set((server.base / "output" / "fal-audio").glob("*"))
    start = len(fal.submissions)

    entry, events = run(server, prompt)

    assert entry["status"]["status_str"] == "success", failure(entry)
    # Every model node either paid for its takes now, or (same inputs as earlier in this session) reused.
    fresh = [n for n in models.values() if signature(n) not in _ran]
    submissions = fal.submissions[start:]
    assert sorted(s.endpoint for s in submissions) == sorted(
        endpoint_of(n, pack_nodes) for n in fresh for _ in range(takes_of(n))), [s.endpoint for s in submissions]
    # The user watched each model node work: progress text under the node, ending in the final status.
    for node_id, node in models.items():
        texts = events.texts_of(node_id)
        if signature(node) in _ran and not texts:
            continue  # served from ComfyUI's cache: the node did not run
        assert texts, f"{path.name}: no progress text for node {node_id} ({node['class_type']})"
        if signature(node) not in _ran:
            assert any("Submitting" in t for t in texts), texts
        assert any(t.startswith("Done in") for t in texts), texts
    # Every file the run wrote decodes and carries audio fal returned (a tone of one of the kept originals).
    files = output_files(server, entry)
    assert files, f"{path.name}: the run wrote no output file"
    tones = served_tones(server)
    for file in files:
        assert file.is_file() and file.stat().st_size > 0, file
        samples, rate = decode_audio(file)
        assert len(samples) >= rate // 2, f"{file.name}: {len(samples)} samples"  # the catalog answers 0.5 s
        found = dominant_hz(samples, rate)
        assert any(abs(found - tone) < 5 for tone in tones), f"{file.name}: {found:.0f} Hz, fal returned {tones}"
    # Each paid request's original file is kept, named after fal's request id.
    kept = set((server.base / "output" / "fal-audio").glob("*")) - kept_before
    for submission in submissions:
        if returns_files(fal.job(submission.request_id).result):  # a transcript alone keeps no file
            assert any(submission.request_id in p.name for p in kept), (submission.request_id, sorted(kept))
    _ran.update(signature(n) for n in models.values())


def lyria_prompt(seed: int) -> dict:
    return {"1": {"class_type": "FalAudioLyria2", "inputs": {"prompt": "slow ambient pads", "negative_prompt": "",
                                                            "seed": seed, "takes": 1}},
            "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/lyria"}}}


def test_cancel_reaches_fal(server, fal):
    fal.set_timing("fal-ai/lyria2", run_seconds=120.0)
    start, cancels = len(fal.submissions), len(fal.cancels)
    events = Events(server)
    try:
        prompt_id = server.queue(lyria_prompt(seed=7001), events.client_id)
        deadline = time.monotonic() + 60
        while len(fal.submissions) == start and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(fal.submissions) > start, "the request never reached fal"
        while not any(t.startswith("Running") for t in events.texts_of("1")) and time.monotonic() < deadline:
            time.sleep(0.1)
        server.post("/interrupt")  # the Cancel button
        entry = server.history(prompt_id, timeout=60)
    finally:
        events.close()
        fal.set_timing("fal-ai/lyria2")  # back to answering at once
    request_id = fal.submissions[start].request_id
    assert fal.cancels[cancels:] == [request_id]  # fal was told to stop (and stop billing)
    assert entry["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"]), entry["status"]


def test_restart_between_identical_prompts_pays_once(server, fal):
    start = len(fal.submissions)
    first, _ = run(server, lyria_prompt(seed=7002))
    assert first["status"]["status_str"] == "success", failure(first)
    assert len(fal.submissions) == start + 1

    server.restart()  # a new process: ComfyUI's own cache is gone, the pack's journal is not

    second, events = run(server, lyria_prompt(seed=7002))
    assert second["status"]["status_str"] == "success", failure(second)
    assert len(fal.submissions) == start + 1  # paid once
    assert any("Reused the kept result" in t for t in events.texts_of("1")), events.texts_of("1")
    (a,), (b,) = output_files(server, first), output_files(server, second)
    assert decode_audio(a)[0].tolist() == decode_audio(b)[0].tolist()


def test_pack_loaded_without_a_version_warning(server):
    log = server.log()
    lines = [line for line in log.splitlines() if line.rstrip().endswith(f"custom_nodes/{PACK_FOLDER}")]
    assert lines and not any("IMPORT FAILED" in line for line in lines), lines
    assert "fal Audio needs ComfyUI" not in log  # v0.21.0 is new enough
