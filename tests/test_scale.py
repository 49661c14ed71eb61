"""Issue 13: the pack at scale. Declaring nodes stays cheap however many there are, a fal
result chained into another fal node is sent by fal's own URL (no upload), and many
requests run at once up to a pack-wide cap."""

import asyncio
import json
import subprocess
import sys

import pytest

from support import PACK_DIR, defaults, pack_module, run_node

# What ComfyUI has loaded, and what the pack may only import when a node runs.
HEAVY = ("torch", "numpy", "av", "httpx", "fal_client", "sqlite3", "xxhash", "PIL", "trustme", "certifi")


def test_declaring_the_nodes_imports_nothing_heavy():
    """Import the pack as ComfyUI does (hyphenated folder name) and list the nodes' inputs,
    as ComfyUI's /object_info does: none of the heavy modules is imported, whatever nodes
    are registered (every registered class is covered, including ones added later)."""
    code = (
        "import asyncio, json, logging, importlib.util, sys\n"  # what ComfyUI has loaded (not torch: see below)
        "before = set(sys.modules)\n"
        f"spec = importlib.util.spec_from_file_location('fal-audio-light', r'{PACK_DIR / '__init__.py'}')\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['fal-audio-light'] = m; spec.loader.exec_module(m)\n"
        "after_import = sorted(n for n in set(sys.modules) - before if n.split('.')[0] in HEAVY)\n"
        "for cls in m.NODE_CLASS_MAPPINGS.values():\n"
        "    cls.INPUT_TYPES(); cls.RETURN_TYPES; cls.FUNCTION\n"
        "after_inputs = sorted(n for n in set(sys.modules) - before if n.split('.')[0] in HEAVY)\n"
        "print(json.dumps([len(m.NODE_CLASS_MAPPINGS), after_import, after_inputs]))\n"
    )
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + code], capture_output=True, text=True,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    count, after_import, after_inputs = json.loads(out.stdout)
    assert count >= 18
    assert after_import == [], f"importing the pack imported {after_import}"
    assert after_inputs == [], f"listing the nodes' inputs imported {after_inputs}"


# -- many requests at once: a pack-wide cap on requests in flight ------------------------------

LYRIA = "FalAudioLyria2"


def client_options(nodes, **values):
    (options,) = run_node(nodes["FalAudioClient"], **defaults(nodes["FalAudioClient"], **values))
    return options


def most_at_once(jobs, run_seconds):
    """The most emulated jobs that were in flight (submitted, not finished) at one moment."""
    edges = sorted([(job.submitted_at, 1) for job in jobs] + [(job.submitted_at + run_seconds, -1) for job in jobs])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_takes_beyond_the_cap_wait_for_a_slot_and_all_finish(fal, nodes, comfy):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5, rate=8000, channels=1))
    fal.set_timing("fal-ai/lyria2", run_seconds=0.4)
    options = client_options(nodes, max_concurrent_requests=2)
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="rain", seed=10, takes=6, fal_client=options,
                                                     unique_id="5"))
    assert audio["waveform"].shape[0] == 6
    assert sorted(s.payload["seed"] for s in fal.submissions) == [10, 11, 12, 13, 14, 15]  # each sent once
    assert most_at_once(fal.jobs, 0.4) <= 2
    assert any(text.startswith("take ") and "Waiting for a free request slot (2 requests in flight" in text
               for text in comfy.texts())


def test_the_cap_is_shared_by_every_node_of_the_pack(fal, nodes, comfy):
    """Nodes of one prompt (as ComfyUI runs a list input: one run per item, all at once) share one cap."""
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5, rate=8000, channels=1))
    fal.set_timing("fal-ai/lyria2", run_seconds=0.3)
    options = client_options(nodes, max_concurrent_requests=3)
    node = nodes[LYRIA]

    async def prompt():
        runs = [node().generate(**defaults(node, prompt=f"item {i}", seed=i, takes=2, fal_client=options))
                for i in range(0, 10, 2)]
        return await asyncio.gather(*runs)

    outputs = asyncio.run(prompt())
    assert [o[0]["waveform"].shape[0] for o in outputs] == [2] * 5
    assert sorted(s.payload["seed"] for s in fal.submissions) == list(range(10))
    assert most_at_once(fal.jobs, 0.3) <= 3


def test_waiting_for_a_slot_sends_nothing_and_cancel_stops_the_wait(fal, nodes, comfy):
    """Requests stuck in fal's queue keep their slots: the rest wait, unsent; Cancel ends the wait
    (and cancels the ones in flight on fal) without sending any of the waiting ones."""
    fal.set_timing("fal-ai/lyria2", stuck_in_queue=True)
    options = client_options(nodes, max_concurrent_requests=2)
    node = nodes[LYRIA]
    inputs = defaults(node, prompt="stuck", seed=100, takes=5, fal_client=options, unique_id="6")

    async def prompt():
        task = asyncio.ensure_future(node().generate(**inputs))
        for _ in range(600):
            if len(fal.submissions) >= 2 and sum("Waiting for a free request slot" in t for t in comfy.texts()) >= 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # time enough for a third submit, if the cap did not hold
        waiting = sum("Waiting for a free request slot" in t for t in comfy.texts())
        assert len(fal.submissions) == 2 and waiting == 3
        comfy.interrupt()
        with pytest.raises(comfy.InterruptProcessingException):
            await task

    asyncio.run(prompt())
    assert len(fal.submissions) == 2
    assert sorted(fal.cancels) == sorted(s.request_id for s in fal.submissions)
    slots = pack_module("utils.slots").SLOTS
    assert slots.in_flight == 0 and slots.waiting() == 0  # every slot given back


def test_429_answers_are_retried_once_each_and_nothing_is_sent_twice(fal, nodes, comfy):
    """fal's 429 (account concurrency reached) proves the submit was not taken: it is resent after a
    backoff. Every take still ends up submitted exactly once."""
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5, rate=8000, channels=1))
    fal.set_timing("fal-ai/lyria2", run_seconds=0.2)
    fal.fault("POST", r"^queue\.fal\.run/fal-ai/lyria2$", status=429, body={"detail": "Too many requests"}, times=3)
    options = client_options(nodes, max_concurrent_requests=2)
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="rain", seed=40, takes=4, fal_client=options))
    assert audio["waveform"].shape[0] == 4
    assert sorted(s.payload["seed"] for s in fal.submissions) == [40, 41, 42, 43]
    posts = [path for method, path in fal.requests if method == "POST" and path == "queue.fal.run/fal-ai/lyria2"]
    assert len(posts) == 4 + 3  # each 429 answered once, then resent


def test_a_submit_that_may_have_gone_through_is_not_resent_and_frees_its_slot(fal, nodes, comfy):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5, rate=8000, channels=1))
    fal.fault("POST", r"^queue\.fal\.run/fal-ai/lyria2$", close=True)  # the connection drops after sending
    options = client_options(nodes, max_concurrent_requests=1)
    with pytest.raises(Exception, match="may or may not be running"):
        run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="rain", seed=70, takes=3, fal_client=options))
    posts = [path for method, path in fal.requests if method == "POST" and path == "queue.fal.run/fal-ai/lyria2"]
    # The uncertain one is never resent; the other takes ran (one slot, so one after the other).
    assert len(posts) == 3 and sorted(s.payload["seed"] for s in fal.submissions) in ([70, 71], [70, 72], [71, 72])
    assert pack_module("utils.slots").SLOTS.in_flight == 0
