"""Issue 13 item 5 measured in a real ComfyUI v0.21.0: the time a Lyria 2 node adds to a 2 s fal job
that returns a 30 s 48 kHz stereo WAV, against one plain GET + PyAV decode of that file.

    python bench/comfyui_overhead.py [--runs N] [--keep]

Run it in the test environment (the README's `.venv`): like the integration tests it sets ComfyUI up
from ../shared/comfyui (tests/integration/comfyui_harness.py; its requirements go into the running
Python) and starts it headless on 127.0.0.1 with this pack linked into custom_nodes. The fal emulator
(tests/fal_emulator.py) runs in this script's process, so in another process than ComfyUI, as fal is;
SSL_CERT_FILE is a real-size CA bundle (certifi's plus the emulator's CA), as in bench/run.py.

Each run queues a prompt through POST /prompt: FalAudioLyria2 (a fresh seed, so neither ComfyUI's
cache nor the pack's journal hands back a kept result) feeding PreviewAudio. The node's time is read
from the websocket as ComfyUI's frontend sees it: from the `executing` message naming the Lyria node to
the next `executing` message of the prompt (the output node), both stamped on receipt here (loopback).
Added time = that - the emulator's job time (queue 0 s + run 2 s). The floor, measured in the same
process between the prompts: one plain httpx GET of the same file through the emulator's proxy on an
already-built client + one decode with the pack's PyAV decoder (media.audio.decode_av). A warm-up
prompt (and a warm-up floor) come first. Medians over --runs runs.

The table row goes to stdout (as bench/run.py's); per-run values, where the node's time goes (from the
emulator's request log and the websocket) and the load average go to stderr. Exit status 0 when it
measured, whatever the figure: this is a measurement, not a test.
"""

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LYRIA = "FalAudioLyria2"
ENDPOINT = "fal-ai/lyria2"
LYRIA_ID, OUTPUT_ID = "1", "2"
OUTPUT_NODE = "PreviewAudio"
SECONDS, RATE, CHANNELS = 30.0, 48000, 2
RUN_SECONDS = 2.0
QUEUE_SECONDS = 0.0
LIMIT = 1.2  # x floor (issue 13 item 5)
KEY = "cbench00-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"
PACK_NAME = "comfyui-fal-audio-comfybench"
PROGRESS_TEXT = "progress_text"  # how the harness names a binary progress text (comfyui_harness.PROGRESS_TEXT)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _list(values, fmt: str = ".3f") -> str:
    return "[" + ", ".join(f"{v:{fmt}}" for v in values) + "]"


# -- reading the websocket (pure: tested in tests/bench/test_comfyui_bench.py) -----------------------------


def node_span(timeline: list, prompt_id: str, node_id: str) -> dict:
    """Where one node's time went, from a websocket timeline [(receipt time, message)] of one client:

    start: the `executing` message naming the node in that prompt; end: the next `executing` message of
    that prompt (the next node, or node None when the prompt ended), which ComfyUI sends once it has taken
    the node's outputs and started the next node; last_text: the node's last progress text before end (the
    pack sends its summary as the node's function returns, so this is about when the node's own code
    ended); finished: the `progress_state` message that first shows the node finished (ComfyUI stored the
    node's outputs); next_node: what end named. Missing moments are None.

    Progress texts carry no prompt id (ComfyUI broadcasts them): they count when they arrive between start
    and end and name the node."""
    span = {"start": None, "end": None, "last_text": None, "finished": None, "next_node": None, "texts": [],
            "messages": {}}
    for received, message in timeline:
        kind, data = message.get("type"), message.get("data") or {}
        if span["start"] is None:
            if kind == "executing" and data.get("prompt_id") == prompt_id and data.get("node") == node_id:
                span["start"] = received
            continue
        if kind == "executing" and data.get("prompt_id") == prompt_id:
            span["end"], span["next_node"] = received, data.get("node")
            break
        span["messages"][kind] = span["messages"].get(kind, 0) + 1
        if kind == PROGRESS_TEXT and data.get("node") == node_id:
            span["last_text"] = received
            span["texts"].append((received, data.get("text")))
        elif (kind == "progress_state" and data.get("prompt_id") == prompt_id and span["finished"] is None
              and ((data.get("nodes") or {}).get(node_id) or {}).get("state") == "finished"):
            span["finished"] = received
    return span


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# -- the emulator's request log ----------------------------------------------------------------------


class RequestLog:
    """Every request the emulator handles, with when its handling began and ended (time.monotonic, this
    process: the same clock as the websocket receipts). Wraps the emulator instance's dispatcher; the
    emulator itself is unchanged."""

    def __init__(self, emulator):
        self.entries = []
        self._lock = threading.Lock()
        handle = emulator._handle

        def timed(conn, method, host, target, body):
            began = time.monotonic()
            try:
                return handle(conn, method, host, target, body)
            finally:
                kind = emulator._route(method, host, target.split("?", 1)[0])[0]
                with self._lock:
                    self.entries.append((began, time.monotonic(), kind, method, host + target))

        emulator._handle = timed

    def between(self, start: float, end: float) -> list:
        with self._lock:
            return [e for e in self.entries if start <= e[0] <= end]


def phases(span: dict, requests: list, job_start: float, job_seconds: float) -> dict:
    """The node's time cut at the moments the emulator saw: before the job was submitted; the job; from
    the job's end to the result request (how late completion was noticed); the result and file requests;
    from the file served to the node's last progress text (decode, keep, journal, the pack's end); and
    ComfyUI's hand-off from there to the next node's `executing`."""
    job_end = job_start + job_seconds
    result = next((e for e in requests if e[2] == "result"), None)
    download = next((e for e in requests if e[2] == "download"), None)
    out = {"before submit": job_start - span["start"], "job": job_seconds}
    if result is not None:
        out["completion noticed"] = result[0] - job_end
        if download is not None:
            out["result + file GET"] = download[1] - result[0]
            if span["last_text"] is not None:
                out["file served -> node's last text"] = span["last_text"] - download[1]
    if span["last_text"] is not None:
        out["ComfyUI hand-off (last text -> next executing)"] = span["end"] - span["last_text"]
    return out


def texts_after(texts: list, moment) -> dict:
    """{first word of a progress text: its receipt time - moment} for the texts received after moment (the
    last text of each first word: "Downloading 100%" stands for the download's end)."""
    if moment is None:
        return {}
    return {text.split(" ", 1)[0]: received - moment for received, text in texts if received >= moment and text}


# -- main --------------------------------------------------------------------------------------------


class Floor:
    """One plain httpx GET of the file through the emulator's proxy, on a client built once (outside the
    timing), + one PyAV decode with the pack's decoder; in this process, on a long-lived event loop."""

    def __init__(self, url: str, decode):
        import httpx

        self.url, self.decode = url, decode
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient()  # reads HTTPS_PROXY / SSL_CERT_FILE, as bench/run.py's floor

    async def _get(self) -> bytes:
        response = await self.client.get(self.url)
        response.raise_for_status()
        return response.content

    def measure(self):
        gc.collect()
        start = time.perf_counter()
        data = self.loop.run_until_complete(self._get())
        downloaded = time.perf_counter()
        self.decode(data)
        return downloaded - start, time.perf_counter() - downloaded

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="measured prompts (median; default 8)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (ComfyUI's base, its log)")
    args = parser.parse_args()

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration"), str(ROOT / "bench")]
    import support
    from comfyui_harness import ComfyUI, Events, missing_prerequisite, setup_comfyui
    from fal_emulator import FalEmulator
    from run import Report, _code_version, _real_ca_bundle

    reason = missing_prerequisite()
    if reason and "chromium" not in reason:  # no browser is needed here
        say(f"cannot measure: {reason}")
        return 2

    class TimedEvents(Events):
        """The harness's websocket client (every message stamped on receipt), waiting for a prompt's end."""

        def wait_end(self, prompt_id: str, timeout: float = 120.0) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._lock:
                    for _, m in self.timeline:
                        data = m.get("data") or {}
                        if data.get("prompt_id") == prompt_id and (
                                m["type"] in ("execution_error", "execution_interrupted")
                                or (m["type"] == "executing" and data.get("node") is None)):
                            return
                time.sleep(0.05)
            raise RuntimeError(f"prompt {prompt_id} did not end within {timeout:g} s")

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="fal-audio-comfybench-"))
    emu = FalEmulator(key=KEY, workdir=workdir / "emulator")
    server = events = floor = None
    try:
        say("setting ComfyUI up (../shared/comfyui/setup.sh, idempotent) ...")
        main_py = setup_comfyui()
        emu.start()
        log = RequestLog(emu)
        emu.set_handler(ENDPOINT, lambda payload: emu.file_result(seconds=SECONDS, rate=RATE, channels=CHANNELS))
        emu.set_timing(ENDPOINT, queue_seconds=QUEUE_SECONDS, run_seconds=RUN_SECONDS)
        url = emu.audio_file(seconds=SECONDS, rate=RATE, channels=CHANNELS)  # the same bytes every job returns

        env = emu.client_env()
        env["SSL_CERT_FILE"] = _real_ca_bundle(emu.ca_path, workdir)
        # The floor's client in this process reaches the emulator the same way (proxy, CA bundle).
        for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AUDIO_CREDENTIALS"):
            os.environ.pop(name, None)
        os.environ.update(env)
        audio = support.pack_module("media.audio", PACK_NAME)
        floor = Floor(url, getattr(audio, "decode_av", audio.decode))

        server = ComfyUI(main_py, workdir / "comfyui", env)
        t = time.perf_counter()
        server.start()
        say(f"ComfyUI v0.21.0 on {server.url} (ready in {time.perf_counter() - t:.1f} s), fal emulator on "
            f"127.0.0.1:{emu.port} in this process; base dir {server.base}")
        say(f"code under test: {_code_version()}")
        nodes = support.load_pack(PACK_NAME).NODE_CLASS_MAPPINGS
        seed = int(time.time()) % 1_000_000 * 100  # fresh across runs of this script (the base dir is new anyway)
        events = TimedEvents(server)

        def prompt(seed_value: int) -> dict:
            inputs = support.defaults(nodes[LYRIA], prompt="ambient river, gentle piano", seed=seed_value)
            return {LYRIA_ID: {"class_type": LYRIA, "inputs": inputs},
                    OUTPUT_ID: {"class_type": OUTPUT_NODE, "inputs": {"audio": [LYRIA_ID, 0]}}}

        def one(seed_value: int) -> dict:
            before = len(emu.submissions)
            prompt_id = server.queue(prompt(seed_value), events.client_id)
            events.wait_end(prompt_id)
            time.sleep(0.1)  # anything still travelling
            entry = server.history(prompt_id, timeout=60)
            if entry["status"]["status_str"] != "success":
                raise RuntimeError(f"the prompt failed: {json.dumps(entry['status'])[:3000]}\n{server.log_tail()}")
            submissions = emu.submissions[before:]
            if len(submissions) != 1:
                raise RuntimeError(f"expected one paid request, fal saw {len(submissions)}: cache or journal reuse?")
            job = emu.job(submissions[0].request_id)
            if job.timing.queue_seconds != 0.0 or job.timing.run_seconds != RUN_SECONDS:
                raise RuntimeError(f"the job's timing is {job.timing}, not queue 0 s + run {RUN_SECONDS:g} s")
            span = node_span(events.snapshot(), prompt_id, LYRIA_ID)
            if span["start"] is None or span["end"] is None:
                raise RuntimeError(f"no executing messages for node {LYRIA_ID} in {prompt_id}")
            if span["next_node"] != OUTPUT_ID:
                raise RuntimeError(f"after the Lyria node ComfyUI ran {span['next_node']!r}, not {OUTPUT_ID}")
            requests = log.between(span["start"], span["end"])
            served = next((e[1] for e in requests if e[2] == "download"), None)
            return {"node": span["end"] - span["start"], "span": span, "served": served,
                    "phases": phases(span, requests, job.submitted_at, QUEUE_SECONDS + RUN_SECONDS),
                    "requests": [(e[2], round(e[0] - span["start"], 3), round(e[1] - e[0], 3)) for e in requests]}

        say("warm-up: one prompt and one floor (first-call imports, connections, the journal)")
        warm = one(seed)
        say(f"  warm-up node time {warm['node']:.3f} s")
        floor.measure()
        say("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
            + f" on {os.cpu_count()} cores")

        results, downloads, decodes = [], [], []
        for i in range(args.runs):
            results.append(one(seed + 1 + i))
            download, decode = floor.measure()
            downloads.append(download)
            decodes.append(decode)
        load_end = os.getloadavg()

        nodes_times = [r["node"] for r in results]
        added = [n - QUEUE_SECONDS - RUN_SECONDS for n in nodes_times]
        floors = [d + c for d, c in zip(downloads, decodes)]
        say(f"node time (executing -> next executing) {_list(nodes_times)}")
        say(f"added (node - {RUN_SECONDS:g} s job) {_list(added)}")
        say(f"floor download {_list(downloads)} decode {_list(decodes)} sum {_list(floors)}")
        names = list(dict.fromkeys(name for r in results for name in r["phases"]))
        say("where the node's time went (medians; per run in brackets):")
        for name in names:
            values = [r["phases"].get(name) for r in results]
            say(f"  {name:48s} {median(values):7.3f} s  {_list([v for v in values if v is not None])}")
        say(f"  progress texts per run: {[len(r['span']['texts']) for r in results]}; websocket messages during "
            f"the node, last run: {results[-1]['span']['messages']}")
        say(f"  progress texts of the last run: {[text for _, text in results[-1]['span']['texts']]}")
        after = {}
        for r in results:
            for word, offset in texts_after(r["span"]["texts"], r["served"]).items():
                after.setdefault(word, []).append(offset)
        if after:
            say("  the node's progress texts after the file was served (median receipt after it): "
                + ", ".join(f"{word} +{median(offsets):.3f} s" for word, offsets in after.items()))
        finished = [r["span"]["finished"] - r["span"]["last_text"] for r in results
                    if r["span"]["finished"] is not None and r["span"]["last_text"] is not None]
        if finished:
            say(f"  of the hand-off: last text -> ComfyUI's progress_state 'finished' (outputs stored) "
                f"{median(finished):.4f} s; -> next executing "
                f"{median([r['span']['end'] - r['span']['finished'] for r in results if r['span']['finished']]):.4f} s")
        say(f"  requests of the last run (kind, start after executing, duration): {results[-1]['requests']}")
        executed = [float(x) for x in _prompt_times(server.log())]
        if executed:
            say(f"ComfyUI's log, 'Prompt executed in' (whole prompt, PreviewAudio included): {_list(executed, '.2f')}")
        say("load average (1, 5, 15 min) at end: {:.2f} {:.2f} {:.2f}".format(*load_end))

        report = Report()
        report.against_floor(f"overhead in a real ComfyUI 0.21.0: Lyria 2 node (executing → next executing) − "
                             f"{RUN_SECONDS:g} s job (30 s 48 kHz stereo WAV), {args.runs} runs",
                             median(added), median(floors), LIMIT, "s",
                             f" (download {median(downloads):.3f} on a warm connection + PyAV decode "
                             f"{median(decodes):.3f})")
        handoff = median([r["phases"].get("ComfyUI hand-off (last text -> next executing)") for r in results])
        if handoff is not None:
            print(f"\nof which ComfyUI's own hand-off (the node's last progress text → the output node's "
                  f"`executing`): {handoff:.3f} s (median)", flush=True)
    finally:
        if events is not None:
            events.close()
        if floor is not None:
            floor.close()
        if server is not None:
            server.stop()
        emu.stop()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def _prompt_times(log: str) -> list:
    import re

    return re.findall(r"Prompt executed in ([0-9.]+) seconds", log)


if __name__ == "__main__":
    sys.exit(main())
