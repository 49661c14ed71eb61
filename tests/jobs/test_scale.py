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


# The only modules besides the node files that importing the pack may pull in. A first start after an install or
# update (no .pyc) compiles every module the import reaches, so codecs, transport, validation, errors and pricing
# are imported where a node runs them, never to declare it (issue 13: twice the nodes must still start within
# budget).
DECLARATION_MODULES = ["core", "core.comfy", "editor", "editor.routes"]


def test_importing_the_pack_compiles_no_module_a_node_only_needs_when_it_runs():
    name = "fal-audio-declared"
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location({name!r}, r'{PACK_DIR / '__init__.py'}')\n"
        f"m = importlib.util.module_from_spec(spec); sys.modules[{name!r}] = m; spec.loader.exec_module(m)\n"
        f"print(json.dumps(sorted(n[len({name!r}) + 1:] for n in sys.modules if n.startswith({name!r} + '.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    assert [n for n in loaded if n.startswith("nodes.")], loaded  # the node modules themselves are imported
    assert [n for n in loaded if n != "nodes" and not n.startswith("nodes.")] == DECLARATION_MODULES


def test_the_fal_client_declares_the_request_cap_callers_get_by_default(nodes):
    """The fal Client's default cap is declared in nodes.widgets (no import of jobs/ to declare it): it must be the
    one CallOptions falls back to without a fal Client, in the widget and in create()'s signature alike."""
    options = pack_module("jobs.options")
    client = nodes["FalAudioClient"]
    assert pack_module("nodes.widgets").MAX_REQUESTS_PER_RUN == options.MAX_REQUESTS_PER_RUN
    assert options.CallOptions().max_requests_per_run == options.MAX_REQUESTS_PER_RUN
    assert client.INPUT_TYPES()["required"]["max_requests_per_run"][1]["default"] == options.MAX_REQUESTS_PER_RUN
    (made,) = run_node(client, profile="", queue_timeout=300.0, overall_timeout=3600.0, output_dir="")
    assert (made.max_requests_per_run, made.max_concurrent_requests) == (
        options.MAX_REQUESTS_PER_RUN, options.CallOptions().max_concurrent_requests)


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
    slots = pack_module("transport.slots").SLOTS
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
    assert pack_module("transport.slots").SLOTS.in_flight == 0


# -- zero-upload chaining: a fal result passed on unchanged goes by fal's own URL --------------

ACE, INPAINT, OUTPAINT, MINIMAX = ("FalAudioAceStep", "FalAudioAceStepInpaint", "FalAudioAceStepOutpaint",
                                   "FalAudioMiniMaxMusic")


def serve_songs(fal, seconds=20.0):
    """Every ACE-Step endpoint answers with a song (8 kHz stereo WAV, its pitch set by the seed: takes sent at once
    differ) and its tags/lyrics/seed; MiniMax with one."""
    for endpoint in ("fal-ai/ace-step", "fal-ai/ace-step/audio-inpaint", "fal-ai/ace-step/audio-outpaint",
                     "fal-ai/ace-step/audio-to-audio"):
        fal.set_handler(endpoint, lambda p: {**fal.file_result(seconds=seconds, rate=8000, channels=2,
                                                                 freq=200.0 + 10 * p.get("seed", 0)),
                                             "seed": p.get("seed", 0), "tags": p.get("tags", ""), "lyrics": ""})
    fal.set_handler("fal-ai/minimax-music", lambda p: fal.file_result(seconds=5.0, rate=8000, channels=2))


def fal_file(fal, url):
    """The bytes fal serves at one of its file URLs."""
    import urllib.parse

    return fal._files[urllib.parse.unquote(urllib.parse.urlsplit(url).path)].data


def result_url(fal, index):
    return sorted(fal.jobs, key=lambda job: job.submitted_at)[index].result["audio"]["url"]


def song(nodes, seed=1, takes=1):
    return run_node(nodes[ACE], **defaults(nodes[ACE], tags="lofi", duration=20.0, seed=seed, takes=takes))[0]


def inpaint(nodes, audio, seed=0):
    return run_node(nodes[INPAINT], **defaults(nodes[INPAINT], tags="lofi", start_time=2.0, end_time=4.0,
                                               seed=seed), audio=audio)[0]


def test_ace_step_inpaint_outpaint_minimax_chain_uploads_nothing(fal, nodes, comfy):
    serve_songs(fal)
    first = song(nodes)
    painted = inpaint(nodes, first)
    extended = run_node(nodes[OUTPAINT], **defaults(nodes[OUTPAINT], tags="lofi", extend_after_duration=5.0),
                        audio=painted)[0]
    run_node(nodes[MINIMAX], **defaults(nodes[MINIMAX], prompt="## la la ##"), reference_audio=extended)
    sent = [s.payload for s in fal.submissions]
    assert sent[1]["audio_url"] == result_url(fal, 0)
    assert sent[2]["audio_url"] == result_url(fal, 1)
    assert sent[3]["reference_audio_url"] == result_url(fal, 2)
    assert fal.uploads == []  # no encode, no upload: 0 bytes


def test_a_clip_changed_by_another_node_is_uploaded(fal, nodes, comfy):
    """The key rides along on the dict, but a clip whose samples changed (in place, or a copy that a
    node changed) is encoded and uploaded as before; only the unchanged one goes by URL."""
    import copy

    import torch

    serve_songs(fal)
    first = song(nodes)
    louder = {**first, "waveform": first["waveform"] * 1.5}  # a node that copies the dict and changes the clip
    inpaint(nodes, louder, seed=1)
    copied = copy.deepcopy(first)  # another tensor, the same samples: still the fal result
    inpaint(nodes, copied, seed=2)
    first["waveform"][0, 0, 100] += 0.25  # edited in place: same tensor, same dict, other samples
    inpaint(nodes, first, seed=3)
    sent = [s.payload["audio_url"] for s in fal.submissions[1:]]
    assert sent[1] == result_url(fal, 0)
    assert [u.url for u in fal.uploads] == [sent[0], sent[2]]
    assert sent[0] != result_url(fal, 0) and sent[2] != result_url(fal, 0)
    back = pack_module("media.audio").decode(fal.uploads[1].data)["waveform"]
    assert torch.allclose(back, first["waveform"], atol=1e-4)  # the edited clip is what was sent


def test_each_take_of_a_batch_goes_by_its_own_url(fal, nodes, comfy):
    serve_songs(fal)
    takes = song(nodes, seed=5, takes=2)
    assert takes["waveform"].shape[0] == 2
    inpaint(nodes, takes)
    sent = sorted(s.payload["audio_url"] for s in fal.submissions[2:])
    assert sent == sorted([result_url(fal, 0), result_url(fal, 1)]) and fal.uploads == []


def test_a_url_fal_no_longer_serves_is_replaced_by_an_upload_of_the_kept_original(fal, nodes, comfy, monkeypatch):
    serve_songs(fal)
    reuse = pack_module("media.reuse")
    first = song(nodes)
    url = result_url(fal, 0)
    original = fal_file(fal, url)
    # Seen served long ago (a restart, a long pause): asked again with a one-byte ranged GET.
    monkeypatch.setattr(reuse, "_served", {})
    before = len(fal.requests)
    inpaint(nodes, first, seed=1)
    probes = [path for method, path in fal.requests[before:] if method == "GET" and url.endswith(path.split("/", 1)[1])]
    assert len(probes) == 1 and fal.uploads == [] and fal.submissions[-1].payload["audio_url"] == url
    # fal's copy expired: the kept original file is uploaded (the file itself, not a re-encode), once.
    monkeypatch.setattr(reuse, "_served", {})
    fal.remove_file(url)
    inpaint(nodes, first, seed=2)
    inpaint(nodes, first, seed=3)
    assert len(fal.uploads) == 1 and fal.uploads[0].data == original
    assert [s.payload["audio_url"] for s in fal.submissions[-2:]] == [fal.uploads[0].url] * 2


def test_journal_identity_is_the_same_by_url_or_by_upload_of_the_same_file(fal, nodes, comfy):
    """The request is named by the original file's content hash, whichever way the file travels."""
    serve_songs(fal)
    job = pack_module("jobs.job")
    first = song(nodes)
    node = nodes[INPAINT]()
    inputs = defaults(nodes[INPAINT], tags="lofi", start_time=2.0, end_time=4.0, seed=9)
    ((request, _, _),) = node.requests({**inputs, "audio": first})
    by_url = request["audio_url"]
    assert by_url.origin is not None and by_url.data == b""
    by_upload = job.Upload(fal_file(fal, result_url(fal, 0)), "audio/wav", "audio.wav")
    options = pack_module("jobs.options").CallOptions()

    def identity(upload):
        return job.Job(node.ENDPOINT, {**request, "audio_url": upload}, options, None).identity

    assert identity(by_url) == identity(by_upload)
    # And a run that paid by URL is reused by the same run after fal's copy expired: no upload, no charge.
    inpaint(nodes, first, seed=9)
    fal.remove_file(result_url(fal, 0))
    pack_module("media.reuse")._served.clear()
    submitted = len(fal.submissions)
    inpaint(nodes, first, seed=9)
    assert len(fal.submissions) == submitted and fal.uploads == []


def test_the_origin_key_is_plain_data_and_core_nodes_ignore_it(fal, nodes, comfy):
    """ComfyUI caches node outputs and cache providers serialise them; core nodes read only
    waveform and sample_rate (SaveAudio, PreviewAudio, CreateVideo) or build a new dict (AudioMerge)."""
    import copy
    import pickle

    serve_songs(fal)
    first = song(nodes)
    origin = first["fal_origin"]
    assert json.loads(json.dumps(origin)) == origin
    again = pickle.loads(pickle.dumps(first))
    assert again["fal_origin"] == origin and copy.deepcopy(first)["fal_origin"] == origin
    assert set(first) == {"waveform", "sample_rate", "fal_origin"}
    # What core nodes do with AUDIO: write it (16-bit WAV via the pack's own encoder here) and mix it.
    wav = pack_module("media.audio").encode_wav({"waveform": first["waveform"], "sample_rate": first["sample_rate"]})
    assert wav[:4] == b"RIFF"
    merged = {"waveform": (first["waveform"] + again["waveform"]) / 2, "sample_rate": first["sample_rate"]}
    inpaint(nodes, merged, seed=4)  # a new value without the key: uploaded
    assert len(fal.uploads) == 1


def test_a_slot_is_free_once_fal_says_the_request_completed(fal, nodes, comfy):
    """fal's concurrency counts running requests: the next take is sent as soon as fal says the first one
    completed, not after its result (slow to fetch here) and file are in."""
    from support import RESULT

    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5, rate=8000, channels=1))
    fal.set_timing("fal-ai/lyria2", run_seconds=0.2)
    fal.fault("GET", RESULT, delay=1.5, times=1)  # the first result fetch takes 1.5 s
    options = client_options(nodes, max_concurrent_requests=1)
    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="rain", seed=3, takes=2, fal_client=options))
    assert audio["waveform"].shape[0] == 2
    first, second = sorted(fal.jobs, key=lambda job: job.submitted_at)
    assert second.submitted_at - first.submitted_at < 1.2  # well before the first result arrived (>= 1.7 s)
    assert most_at_once(fal.jobs, 0.2) <= 1


def test_clips_are_encoded_off_the_event_loop_and_widget_values_checked_on_it(fal, nodes, monkeypatch):
    """Encoding an input clip must not hold up the other nodes of the prompt; checking plain widget values
    is quicker than a worker-thread hop, so it runs at once."""
    import threading

    import torch

    base = pack_module("nodes.base")
    seen = {}
    original = base.FalAudioNode._plan

    def plan(self, inputs, options):
        seen[type(self).__name__] = threading.current_thread() is threading.main_thread()
        return original(self, inputs, options)

    monkeypatch.setattr(base.FalAudioNode, "_plan", plan)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5, rate=8000, channels=1))
    run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="rain"))
    a2a = nodes["FalAudioAceStepAudioToAudio"]
    clip = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 8000}
    run_node(a2a, **defaults(a2a, audio=clip, tags="rock", original_tags="pop"))
    assert seen == {"FalAudioLyria2": True, "FalAudioAceStepAudioToAudio": False}
