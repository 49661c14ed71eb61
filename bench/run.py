#!/usr/bin/env python
"""Performance figures of the fal Audio pack against the local fal emulator.

    python bench/run.py [--runs N] [--in-process-emulator]

Starts tests/fal_emulator.py's FalEmulator on 127.0.0.1 in a process of its own (as fal is
another machine; bench/remote_emulator.py), or with --in-process-emulator in the bench's own
process (its proxy, TLS and file serving then share the interpreter and its GIL with the pack),
points the real fal_client at it (HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE, FAL_KEY), loads the pack the way ComfyUI does
(importlib.util.spec_from_file_location under a hyphenated package name) and fakes
nothing of ComfyUI: only FAL_AUDIO_OUTPUT_DIR and FAL_AUDIO_DATA_DIR point at a temp
dir, so the kept results and the request journal never touch the user's folders.

Every figure is the median of several runs; each run uses a fresh seed (so the journal
does not hand back a kept result) except where reuse is what is measured. The figures
go to stdout as a Markdown table (pasteable as is), progress and diagnostics to stderr.
The exit status is 0 even when a figure fails: this is a measurement, not a test.
"""

import argparse
import asyncio
import gc
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(ROOT / "bench"))
# The tests' loader: the pack imported by file path under a hyphenated name, as ComfyUI does.
import support  # noqa: E402
# The emulator in its own process, and the handlers both arrangements install the same way.
from remote_emulator import RemoteEmulator, job_times, set_file_result, upload_size  # noqa: E402

PACK_NAME = "comfyui-fal-audio-bench"
KEY = "bench000-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"

LYRIA = "FalAudioLyria2"
DIFFRHYTHM = "FalAudioDiffRhythm"
ACE_A2A = "FalAudioAceStepAudioToAudio"
HEAVY = ("fal_client", "httpx", "av", "numpy", "sqlite3", "xxhash")
# What ComfyUI has already imported when it loads custom nodes.
COMFY_PRELOAD = "import torch, asyncio, json, logging"

IMPORT_TARGET_MS = 30.0
FIRST_IMPORT_TARGET_MS = 60.0
OVERHEAD_LIMIT = 1.2  # x floor
LATE_TARGET_S = 0.25
POLLS_TARGET = 5.0  # per second
CONCURRENCY_LIMIT = 1.3  # x one job
MEMORY_LIMIT = 3.0  # x float32 waveform
UPLOAD_LIMIT = 1.5  # x raw upload

LYRIA_SECONDS, LYRIA_RATE = 30.0, 48000
OVERHEAD_RUN_SECONDS = 1.0
POLL_RUN_SECONDS = 5.0
CONCURRENT_RUN_SECONDS = 2.0
LONG_SECONDS, LONG_RATE = 285.0, 44100
# ElevenLabs Music's longest result, 10 minutes: its decode must peak at <= 2x its float32 waveform.
TEN_MINUTES = 600.0
TEN_MINUTE_LIMIT = 2.0  # x float32 waveform
MANY_REQUESTS, MANY_CAP = 32, 16
CHAIN_SECONDS, CHAIN_EXTEND = 60.0, 30.0
UPLOAD_SECONDS, UPLOAD_RATE = 60.0, 44100

_seeds = itertools.count(1000)


def fresh_seed(count: int = 1) -> int:
    """A seed no earlier run used (takes=N uses seed..seed+N-1)."""
    first = next(_seeds)
    for _ in range(count - 1):
        next(_seeds)
    return first


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values)


# -- figures ----------------------------------------------------------------------------


class Report:
    HEADER = ("| figure | measured | floor or target | ratio | result |\n"
              "|---|---|---|---|---|")

    def __init__(self):
        self.passed = 0
        self.failed = 0
        print(self.HEADER, flush=True)

    def row(self, name: str, measured: str, reference: str, ratio: str, ok: bool) -> None:
        self.passed += ok
        self.failed += not ok
        print(f"| {name} | {measured} | {reference} | {ratio} | {'PASS' if ok else 'FAIL'} |", flush=True)

    def against_target(self, name: str, value: float, target: float, unit: str, fmt: str = ".3f") -> None:
        """value must be <= target."""
        self.row(name, f"{value:{fmt}} {unit}", f"target ≤ {target:{fmt}} {unit}", f"{value / target:.2f}",
                 value <= target)

    def against_floor(self, name: str, value: float, floor: float, limit: float, unit: str, floor_text: str = "",
                      fmt: str = ".3f") -> None:
        """value must be <= limit x floor."""
        ratio = value / floor
        reference = f"floor {floor:{fmt}} {unit}{floor_text}; target ≤ {limit:g}× floor"
        self.row(name, f"{value:{fmt}} {unit}", reference, f"{ratio:.2f}×", ratio <= limit)

    def summary(self) -> None:
        print(f"\n{self.passed} passed, {self.failed} failed", flush=True)


# -- the pack, as ComfyUI loads it --------------------------------------------------------


def sine_clip(seconds: float, rate: int):
    import torch

    t = torch.arange(int(seconds * rate), dtype=torch.float32) / rate
    waveform = torch.stack([0.5 * torch.sin(2 * torch.pi * 330 * t), 0.4 * torch.sin(2 * torch.pi * 550 * t)])
    return {"waveform": waveform.unsqueeze(0).contiguous(), "sample_rate": rate}


class Bench:
    def __init__(self, emulator, runs: int, quick: bool = False):
        self.emu = emulator
        self.runs = runs
        self.quick = quick
        self.pack = support.load_pack(PACK_NAME)
        self.nodes = self.pack.NODE_CLASS_MAPPINGS
        # The floor's long-lived event loop (its client is built once, outside the timing).
        self.loop = asyncio.new_event_loop()
        self._http = None
        self._warm = False

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    @staticmethod
    def prompt(coro_factory) -> float:
        """Wall time of one ComfyUI prompt: ComfyUI 0.21 runs each prompt in a new event loop
        (execution.py: asyncio.run(self.execute_async(...))), so whatever the pack keeps per
        loop (network clients, connections) is built again for every prompt. Timed inside
        the loop, from the node's start to its end, as ComfyUI's own node timing is."""
        async def timed():
            gc.collect()
            start = time.perf_counter()
            await coro_factory()
            return time.perf_counter() - start

        return asyncio.run(timed())

    def close(self) -> None:
        if self._http is not None:
            self.run(self._http.aclose())
        self.loop.close()

    def warm_up(self) -> None:
        """One untimed Lyria 2 call, once per bench: the first call of a process imports fal_client,
        httpx, av and numpy and opens the journal (~1 s), which no figure (and no floor) may include."""
        if not self._warm:
            self.node_call(LYRIA, **self.lyria(seed=fresh_seed()))
            self._warm = True

    def node_call(self, name: str, **inputs) -> float:
        """Wall time of one node.generate(...) awaited in the bench's event loop."""
        node_class = self.nodes[name]
        return self.prompt(lambda: getattr(node_class(), node_class.FUNCTION)(**inputs))

    def lyria(self, **overrides) -> dict:
        return support.defaults(self.nodes[LYRIA], prompt="ambient river, gentle piano", **overrides)

    # -- 2. overhead -----------------------------------------------------------------

    async def _plain_download(self, url: str) -> bytes:
        import httpx

        if self._http is None:
            # Built once, outside the timed part, as a long-lived client would be.
            self._http = httpx.AsyncClient()
        response = await self._http.get(url)
        response.raise_for_status()
        return response.content

    def floor(self, url: str):
        """One plain httpx GET of the file (loopback, through the proxy) + one PyAV decode (the
        pack's own PyAV decoder, as the issue defines the floor; the node may decode faster)."""
        audio = support.pack_module("media.audio", PACK_NAME)
        decode = getattr(audio, "decode_av", audio.decode)
        gc.collect()
        start = time.perf_counter()
        data = self.run(self._plain_download(url))
        downloaded = time.perf_counter()
        decode(data)
        return downloaded - start, time.perf_counter() - downloaded

    def cold_get(self, url: str) -> float:
        """The same GET as a ComfyUI prompt must make it: in a new event loop, on a new client
        (so a new proxy tunnel and TLS connection; the TLS context is shared, as the pack's is)."""
        import httpx

        context = support.pack_module("core.tls", PACK_NAME).ssl_context()

        async def get():
            async with httpx.AsyncClient(verify=context) as client:
                gc.collect()
                start = time.perf_counter()
                response = await client.get(url)
                response.raise_for_status()
                return time.perf_counter() - start

        return asyncio.run(get())

    def overhead(self, report: Report) -> None:
        emu = self.emu
        runs = 2 * self.runs  # short runs, and the noisiest figure
        say(f"overhead: Lyria 2 node, {LYRIA_SECONDS:g} s {LYRIA_RATE} Hz stereo WAV, "
            f"{OVERHEAD_RUN_SECONDS:g} s jobs, {runs} runs")
        set_file_result(emu, "fal-ai/lyria2", seconds=LYRIA_SECONDS, rate=LYRIA_RATE, channels=2)
        url = emu.audio_file(seconds=LYRIA_SECONDS, rate=LYRIA_RATE, channels=2)  # also encodes it once
        emu.set_timing("fal-ai/lyria2", run_seconds=OVERHEAD_RUN_SECONDS)
        # Warm-up: fal_client/httpx/av imports, the loop's client pool, the journal file.
        self.warm_up()
        self.floor(url)
        walls, downloads, decodes, colds = [], [], [], []
        for _ in range(runs):
            walls.append(self.node_call(LYRIA, **self.lyria(seed=fresh_seed())))
            download, decode = self.floor(url)
            downloads.append(download)
            decodes.append(decode)
            colds.append(self.cold_get(url) + decode)
        model = OVERHEAD_RUN_SECONDS  # queue 0 s + run 1 s
        overheads = [w - model for w in walls]
        floors = [d + c for d, c in zip(downloads, decodes)]
        late = [w - model - f for w, f in zip(walls, floors)]
        say(f"  node wall {_list(walls)}; floor download {_list(downloads)} decode {_list(decodes)}; "
            f"new-connection GET + decode {_list(colds)}")
        report.against_floor("overhead: Lyria 2 node wall − model time (30 s 48 kHz WAV)", median(overheads),
                             median(floors), OVERHEAD_LIMIT, "s",
                             f" (download {median(downloads):.3f} on a warm connection + decode "
                             f"{median(decodes):.3f})")
        report.against_floor("the same, against a GET on a new connection (as a prompt's new loop needed "
                             "before the network loop) + decode",
                             median(overheads), median(colds), OVERHEAD_LIMIT, "s")
        report.against_target("completion noticed late: wall − run − download/decode", median(late),
                              LATE_TARGET_S, "s")

        self.timeline()

        say(f"polls: Lyria 2 node, {POLL_RUN_SECONDS:g} s job, 2 runs")
        emu.set_timing("fal-ai/lyria2", run_seconds=POLL_RUN_SECONDS)
        rates = []
        for _ in range(2):
            before = len(emu.submissions)
            self.node_call(LYRIA, **self.lyria(seed=fresh_seed()))
            (request_id,) = [s.request_id for s in emu.submissions[before:]]
            polls = sum(1 for r in emu.status_calls if r == request_id)
            rates.append(polls / POLL_RUN_SECONDS)
        say(f"  status calls per second {_list(rates, '.1f')}")
        report.against_target(f"status polls per second ({POLL_RUN_SECONDS:g} s job)", median(rates), POLLS_TARGET,
                              "/s", ".1f")

    def timeline(self) -> None:
        """Where one prompt's time goes (stderr): each step of the node and of its one request,
        from the node's start, with the time since the previous mark. The steps are wrapped only
        for this one extra run (the figures above are from unwrapped runs)."""
        import contextlib
        import functools

        marks = []

        def wrap(owner, name: str, label: str, patches: contextlib.ExitStack) -> None:
            original = getattr(owner, name)

            @functools.wraps(original)
            async def timed(*args, **kwargs):
                marks.append((f"{label} >", time.perf_counter()))
                try:
                    return await original(*args, **kwargs)
                finally:
                    marks.append((f"{label} <", time.perf_counter()))

            setattr(owner, name, timed)
            patches.callback(setattr, owner, name, original)

        job = support.pack_module("jobs.job", PACK_NAME)
        journal = support.pack_module("money.journal", PACK_NAME)
        gateway = support.pack_module("transport.gateway", PACK_NAME)
        base = support.pack_module("nodes.base", PACK_NAME)
        spend = support.pack_module("jobs.spend", PACK_NAME)
        with contextlib.ExitStack() as patches:
            wrap(base.FalAudioNode, "generate", "node", patches)
            wrap(spend, "estimate", "estimate", patches)
            for owner, name, label in ((job.Job, "_claim", "claim"), (job.Job, "_submit", "submit"),
                                       (job.waiting.Follow, "until_done", "wait"),
                                       (job.Keeper, "download", "download"), (job.Keeper, "decode", "decode")):
                wrap(owner, name, label, patches)
            for name in ("submit", "result"):
                wrap(gateway.Gateway, name, f"{name} (network)", patches)
            original_call = journal.Journal.call

            async def call(book, op, *args, **kwargs):
                label = f"journal {getattr(op, '__name__', 'step')}"
                marks.append((f"{label} >", time.perf_counter()))
                try:
                    return await original_call(book, op, *args, **kwargs)
                finally:
                    marks.append((f"{label} <", time.perf_counter()))

            journal.Journal.call = call
            patches.callback(setattr, journal.Journal, "call", original_call)
            self.node_call(LYRIA, **self.lyria(seed=fresh_seed()))
        if not marks:
            return
        # The emulator's side, on the same clock (CLOCK_MONOTONIC, shared by the two processes).
        for endpoint, submitted in job_times(self.emu).values():
            if endpoint == "fal-ai/lyria2" and marks[0][1] <= submitted <= marks[-1][1]:
                marks.append(("fal: job submitted", submitted))
                marks.append(("fal: job due to complete", submitted + OVERHEAD_RUN_SECONDS))
        marks.sort(key=lambda mark: mark[1])
        say("  timeline of one more prompt (ms from the node's start; +ms since the previous mark):")
        start = previous = marks[0][1]
        for label, moment in marks:
            say(f"    {1000 * (moment - start):8.1f}  +{1000 * (moment - previous):6.1f}  {label}")
            previous = moment

    # -- 3. concurrency --------------------------------------------------------------

    def concurrency(self, report: Report) -> None:
        emu = self.emu
        runs = max(3, self.runs - 2)
        say(f"concurrency: Lyria 2 node, {CONCURRENT_RUN_SECONDS:g} s jobs, {runs} runs each")
        set_file_result(emu, "fal-ai/lyria2", seconds=LYRIA_SECONDS, rate=LYRIA_RATE, channels=2)
        emu.set_timing("fal-ai/lyria2", run_seconds=CONCURRENT_RUN_SECONDS)
        node_class = self.nodes[LYRIA]

        async def four_nodes():
            await asyncio.gather(*(node_class().generate(**self.lyria(seed=fresh_seed())) for _ in range(4)))

        self.warm_up()
        singles, fours, takes = [], [], []
        for _ in range(runs):
            singles.append(self.node_call(LYRIA, **self.lyria(seed=fresh_seed())))
            fours.append(self.prompt(four_nodes))
            takes.append(self.node_call(LYRIA, **self.lyria(seed=fresh_seed(4), takes=4)))
        say(f"  one job {_list(singles)}; four nodes {_list(fours)}; takes=4 {_list(takes)}")
        one = median(singles)
        report.against_floor("4 Lyria 2 nodes at once (asyncio.gather), 2 s jobs", median(fours), one,
                             CONCURRENCY_LIMIT, "s", " (one node, one job)")
        report.against_floor("takes=4 on one Lyria 2 node, 2 s jobs", median(takes), one, CONCURRENCY_LIMIT, "s",
                             " (one node, one job)")

    def many(self, report: Report) -> None:
        """32 requests at once (a list input of 32 prompts: ComfyUI runs the node once per item,
        all in one prompt) with the default cap of 16 in flight."""
        emu = self.emu
        count, cap = MANY_REQUESTS, MANY_CAP
        runs = 1 if self.quick else max(2, self.runs - 3)
        say(f"many: {count} Lyria 2 nodes in one prompt, {CONCURRENT_RUN_SECONDS:g} s jobs, cap {cap}, {runs} runs")
        set_file_result(emu, "fal-ai/lyria2", seconds=LYRIA_SECONDS, rate=LYRIA_RATE, channels=2)
        emu.set_timing("fal-ai/lyria2", run_seconds=CONCURRENT_RUN_SECONDS)
        node_class = self.nodes[LYRIA]
        slots = support.pack_module("transport.slots", PACK_NAME).SLOTS
        (options,) = self.nodes["FalAudioClient"]().create("", 300.0, 3600.0, "", max_concurrent_requests=cap)

        async def many_nodes():
            await asyncio.gather(*(node_class().generate(**self.lyria(seed=fresh_seed(), fal_client=options))
                                   for _ in range(count)))

        self.warm_up()
        singles, manys, peaks = [], [], []
        for _ in range(runs):
            singles.append(self.node_call(LYRIA, **self.lyria(seed=fresh_seed())))
            slots.peak = 0
            manys.append(self.prompt(many_nodes))
            peaks.append(slots.peak)
        say(f"  one job {_list(singles)}; {count} at once {_list(manys)}; most in flight {peaks}")
        one = median(singles)
        report.against_floor(f"{count} Lyria 2 nodes at once, cap {cap} in flight, 2 s jobs", median(manys),
                             one * count / cap, CONCURRENCY_LIMIT, "s", f" ({count}/{cap} × one node, one job)")
        report.row(f"most requests in flight during the {count}", str(max(peaks)), f"target ≤ {cap} (the cap)",
                   f"{max(peaks) / cap:.2f}", max(peaks) <= cap)

    # -- 4. memory -------------------------------------------------------------------

    def memory(self, report: Report, workdir: Path) -> None:
        for seconds, name, limit in ((LONG_SECONDS, "peak RSS increase, 285 s 44.1 kHz stereo result", MEMORY_LIMIT),
                                     (TEN_MINUTES, "peak RSS increase, 10 min 44.1 kHz stereo result (streamed "
                                                   "decode)", TEN_MINUTE_LIMIT)):
            self._memory(report, workdir, seconds, name, limit)

    def _memory(self, report: Report, workdir: Path, seconds: float, name: str, limit: float) -> None:
        emu = self.emu
        runs = 1 if self.quick else 3
        say(f"memory: DiffRhythm node, {seconds:g} s {LONG_RATE} Hz stereo WAV, {runs} fresh processes")
        # The long song for "285s"; the child's warm-up call ("95s") gets a 1 s file, so that
        # nothing the allocator keeps from the warm-up can hide the measured peak.
        set_file_result(emu, "fal-ai/diffrhythm", seconds=1.0, seconds_by=("music_duration", {"285s": seconds}),
                        rate=LONG_RATE, channels=2)
        emu.set_timing("fal-ai/diffrhythm", run_seconds=0.0)
        emu.audio_file(seconds=seconds, rate=LONG_RATE, channels=2)  # encode it before any node runs
        emu.audio_file(seconds=1.0, rate=LONG_RATE, channels=2)
        waveform_bytes = int(seconds * LONG_RATE) * 2 * 4
        increases = []
        for _ in range(runs):
            # A fresh process per run: what the allocator kept from an earlier run would hide the peak.
            seeds = f"{fresh_seed()},{fresh_seed()}"
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", seeds],
                                 capture_output=True, text=True, cwd=str(workdir), timeout=240)
            if out.returncode != 0:
                raise RuntimeError(f"memory child failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            say(f"  RSS before {result['before'] / 2**20:.0f} MiB, peak {result['peak'] / 2**20:.0f} MiB, "
                f"after {result['after'] / 2**20:.0f} MiB, waveform {result['shape']}, {result['samples']} samples")
            increases.append(result["peak"] - result["before"])
        report.against_floor(name, median(increases) / 2**20, waveform_bytes / 2**20, limit, "MiB",
                             " (float32 waveform)", ".0f")

    # -- 5. uploads ------------------------------------------------------------------

    def uploads(self, report: Report) -> None:
        emu = self.emu
        job = support.pack_module("jobs.job", PACK_NAME)
        gateway = support.pack_module("transport.gateway", PACK_NAME).Gateway(KEY)
        clip = sine_clip(UPLOAD_SECONDS, UPLOAD_RATE)
        say(f"uploads: {UPLOAD_SECONDS:g} s stereo {UPLOAD_RATE} Hz clip, {self.runs} runs")

        async def encode_and_upload():
            upload = job.Upload.from_clip(clip, "audio.wav")
            return await gateway.upload(upload.data, upload.content_type, upload.file_name), upload

        def timed(coro_factory):
            gc.collect()
            start = time.perf_counter()
            result = self.run(coro_factory())
            return time.perf_counter() - start, result

        _, (_, upload) = timed(encode_and_upload)  # warm-up: client, CDN token
        fulls, raws = [], []
        for _ in range(self.runs):
            fulls.append(timed(encode_and_upload)[0])
            raws.append(timed(lambda: gateway.upload(upload.data, upload.content_type, upload.file_name))[0])
        say(f"  encode+upload {_list(fulls)}; upload alone {_list(raws)} ({len(upload.data) / 2**20:.1f} MiB WAV)")
        report.against_floor("encode + upload of a 60 s stereo clip", median(fulls), median(raws), UPLOAD_LIMIT, "s",
                             " (upload of the same WAV bytes)")

        say("uploads: ACE-Step Audio to Audio twice with the same clip, different seeds")
        node = self.nodes[ACE_A2A]
        before = len(emu.uploads)
        for _ in range(2):
            self.node_call(ACE_A2A, **support.defaults(node, audio=clip, tags="lofi, chill", original_tags="rock",
                                               seed=fresh_seed()))
        grew = len(emu.uploads) - before
        submitted = len(emu.submissions)
        say(f"  uploads grew by {grew}; {submitted} submissions so far")
        report.row("uploads for 2 runs of one clip (audio-to-audio, new seed)", f"{grew} upload{'s' * (grew != 1)}",
                   "target exactly 1 upload", f"{grew / 1:.2f}", grew == 1)


    # -- 7. chaining -----------------------------------------------------------------

    def chaining(self, report: Report) -> None:
        """ACE-Step -> Inpaint -> Outpaint -> MiniMax (as reference), each fed the previous AUDIO
        unchanged: bytes uploaded, against what re-encoding each clip as 16-bit WAV would upload."""
        emu = self.emu
        say(f"chaining: ACE-Step {CHAIN_SECONDS:g} s -> Inpaint -> Outpaint (+{CHAIN_EXTEND:g} s) -> MiniMax, "
            f"{LONG_RATE} Hz stereo WAV results")
        # ACE-Step answers the seed and tags it was given, and empty lyrics.
        ace = {"echo": {"seed": 0, "tags": ""}, "extra": {"lyrics": ""}, "rate": LONG_RATE, "channels": 2}
        for endpoint in ("fal-ai/ace-step", "fal-ai/ace-step/audio-inpaint"):
            set_file_result(emu, endpoint, seconds=CHAIN_SECONDS, **ace)
        set_file_result(emu, "fal-ai/ace-step/audio-outpaint", seconds=CHAIN_SECONDS + CHAIN_EXTEND, **ace)
        set_file_result(emu, "fal-ai/minimax-music", seconds=30.0, rate=LONG_RATE, channels=2)
        for endpoint in ("fal-ai/ace-step", "fal-ai/ace-step/audio-inpaint", "fal-ai/ace-step/audio-outpaint",
                         "fal-ai/minimax-music"):
            emu.set_timing(endpoint, run_seconds=0.0)
        nodes = self.nodes
        uploads_before = len(emu.uploads)
        submitted_before = len(emu.submissions)
        wav_bytes = 0

        def call(name, **inputs):
            node_class = nodes[name]
            result = asyncio.run(node_class().generate(**support.defaults(node_class, **inputs)))
            return result[0]

        song = call("FalAudioAceStep", tags="lofi, chill", duration=CHAIN_SECONDS, seed=fresh_seed())
        wav_bytes += 44 + song["waveform"][0].numel() * 2
        painted = call("FalAudioAceStepInpaint", audio=song, tags="lofi, chill", start_time=10.0, end_time=20.0,
                       seed=fresh_seed())
        wav_bytes += 44 + painted["waveform"][0].numel() * 2
        extended = call("FalAudioAceStepOutpaint", audio=painted, tags="lofi, chill",
                        extend_after_duration=CHAIN_EXTEND, seed=fresh_seed())
        wav_bytes += 44 + extended["waveform"][0].numel() * 2
        call("FalAudioMiniMaxMusic", reference_audio=extended, prompt="## la la la ##", seed=fresh_seed())
        sent = emu.uploads[uploads_before:]
        uploaded = sum(upload_size(u) for u in sent)
        urls = [s.payload.get("audio_url") or s.payload.get("reference_audio_url")
                for s in emu.submissions[submitted_before + 1:]]
        say(f"  downstream inputs sent as {urls}; {len(sent)} uploads")
        report.row("bytes uploaded, ACE-Step → Inpaint → Outpaint → MiniMax reference",
                   f"{uploaded / 2**20:.1f} MiB ({len(sent)} uploads)",
                   f"target 0 (re-encoding each clip: {wav_bytes / 2**20:.1f} MiB in 3 uploads)", "-", uploaded == 0)


def _list(values, fmt: str = ".3f") -> str:
    return "[" + ", ".join(f"{v:{fmt}}" for v in values) + "]"


# -- 1. import (fresh subprocesses) --------------------------------------------------------

# Runs in one fresh interpreter per variant: it imports what ComfyUI has loaded, then forks
# one child per run (a fresh process with torch already imported, at a fraction of the cost
# of starting Python and torch again), and each child imports the pack once and reports.
_IMPORT_CHILD = COMFY_PRELOAD + """
import importlib.util, json, os, sys, time
init, name, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(runs):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        before = set(sys.modules)
        start = time.perf_counter()
        spec = importlib.util.spec_from_file_location(name, init)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        elapsed = time.perf_counter() - start
        new = set(sys.modules) - before
        os.write(write, json.dumps({"ms": elapsed * 1000, "nodes": len(module.NODE_CLASS_MAPPINGS),
                                    "pulled": sorted(n for n in new if n.split(".")[0] in %r)}).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        print(pipe.read(), flush=True)
    os.waitpid(pid, 0)
""" % (HEAVY,)


def _import_runs(init: Path, name: str, runs: int) -> list:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # never write .pyc files into the repository
    out = subprocess.run([sys.executable, "-c", _IMPORT_CHILD, str(init), name, str(runs)], capture_output=True,
                         text=True, env=env, cwd="/", timeout=120)
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or len(results) != runs:
        raise RuntimeError(f"import child failed:\n{out.stderr}")
    return results


def _pack_copy(destination: Path, double: bool, compiled: bool) -> Path:
    """A copy of the pack as installed under custom_nodes (no tests, bench, .git, .pyc).

    double: every node module is copied once more (nodes/<name>_copy.py) and its classes
    registered again under new names, so the pack declares twice the nodes it has today:
    what the import costs once the node count doubles.
    """
    shutil.copytree(ROOT, destination, ignore=shutil.ignore_patterns(
        ".git", ".venv", "tests", "bench", "__pycache__", "*.pyc", "example_workflows", "web"))
    if double:
        nodes = destination / "nodes"
        for module in nodes.glob("*.py"):
            if module.stem not in ("__init__", "base", "widgets"):
                shutil.copy(module, nodes / f"{module.stem}_copy.py")
        with open(nodes / "__init__.py", "a") as registry:
            registry.write("\n\nimport importlib as _importlib  # bench: every node declared twice\n"
                           "for _name, _cls in list(_NODES.items()):\n"
                           "    _copy = _importlib.import_module(_cls.__module__ + '_copy')\n"
                           "    NODE_CLASS_MAPPINGS[_name + 'Copy'] = getattr(_copy, _cls.__name__)\n")
    if compiled:
        import compileall

        compileall.compile_dir(str(destination), quiet=1)
    return destination / "__init__.py"


def import_figures(report: Report, runs: int, workdir: Path) -> None:
    # As installed (custom_nodes/<hyphenated name>): with the bytecode cached, which is every
    # ComfyUI start after the first, and with no .pyc at all, the first start after an install
    # or update (or always, under PYTHONDONTWRITEBYTECODE). The no-.pyc copy holds no
    # __pycache__ (a source tree that ran the tests has one, which would hide the compile).
    # Then the same with every node declared twice.
    custom_nodes = workdir / "ComfyUI" / "custom_nodes"
    runs = max(runs, 3) * 3
    say(f"import: {runs} fresh processes each (forked after `{COMFY_PRELOAD}`)")
    variants = [("cached .pyc", False, True), ("no .pyc", False, False),
                ("twice the nodes, cached .pyc", True, True), ("twice the nodes, no .pyc", True, False)]
    times, counts = {}, {}
    pulled = set()
    for label, double, compiled in variants:
        folder = custom_nodes / ("fal-audio" + ("-x2" if double else "") + ("" if compiled else "-src"))
        init = _pack_copy(folder, double, compiled)
        _import_runs(init, folder.name, 1)  # warm-up: the OS file cache
        results = _import_runs(init, folder.name, runs)
        times[label] = [r["ms"] for r in results]
        counts[label] = results[0]["nodes"]
        for result in results:
            pulled.update(result["pulled"])
        say(f"  {label}: {_list(times[label], '.1f')} ms ({counts[label]} nodes)")
    report.against_target(f"import the pack, {counts['cached .pyc']} nodes (ComfyUI restart: cached .pyc)",
                          median(times["cached .pyc"]), IMPORT_TARGET_MS, "ms", ".1f")
    report.against_target(f"import the pack, {counts['no .pyc']} nodes (first start: no .pyc)",
                          median(times["no .pyc"]), FIRST_IMPORT_TARGET_MS, "ms", ".1f")
    report.against_target(f"import with twice the nodes ({counts['twice the nodes, cached .pyc']}), cached .pyc",
                          median(times["twice the nodes, cached .pyc"]), IMPORT_TARGET_MS, "ms", ".1f")
    report.against_target(f"import with twice the nodes ({counts['twice the nodes, no .pyc']}), no .pyc",
                          median(times["twice the nodes, no .pyc"]), FIRST_IMPORT_TARGET_MS, "ms", ".1f")
    report.row(f"heavy modules the import pulled in ({', '.join(HEAVY)})",
               ", ".join(sorted(pulled)) or "none", "target none", "-", not pulled)


# -- 4. memory, the child side -------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def memory_child(seeds: str) -> None:
    """Runs in a fresh process: load the pack, warm up with a short result (first-call
    imports and pools are not what is measured), then sample VmRSS every 5 ms while a
    DiffRhythm node returns the 285 s song."""
    import torch  # noqa: F401 - ComfyUI has it loaded

    warm_seed, seed = (int(s) for s in seeds.split(","))
    pack = support.load_pack(PACK_NAME)
    node_class = pack.NODE_CLASS_MAPPINGS[DIFFRHYTHM]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lyrics = "[00:10.00]Moonlight spills through broken blinds\n[00:14.00]Shadows dance on city lines"

    def call(seed_value: int, music_duration: str):
        inputs = support.defaults(node_class, lyrics=lyrics, style_prompt="pop, warm synths",
                                  music_duration=music_duration, seed=seed_value)
        return loop.run_until_complete(node_class().generate(**inputs))

    (warm,) = call(warm_seed, "95s")  # the emulator answers it with a 1 s file
    del warm
    gc.collect()
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    before = _rss()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    (audio,) = call(seed, "285s")
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _rss())
    waveform = audio["waveform"]
    print(json.dumps({"before": before, "peak": peak[0], "after": _rss(), "shape": list(waveform.shape),
                      "samples": int(waveform.shape[-1])}))


# -- main -------------------------------------------------------------------------------


def _code_version() -> str:
    def git(*args):
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return out.stdout.rstrip("\n") if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    code = ("__init__.py", "nodes", "core", "media", "transport", "money", "jobs", "editor", "tests/fal_emulator.py")
    changed = [line[3:] for line in git("status", "--porcelain", "--", *code).splitlines()]
    return commit + (f" + uncommitted changes in {', '.join(changed)}" if changed else " (clean)")


SECTIONS = ("import", "overhead", "concurrency", "many", "memory", "uploads", "chaining")


def _real_ca_bundle(emulator_ca: str, workdir: Path) -> str:
    """A CA bundle as big as a real one (certifi's) plus the emulator's CA: every new
    HTTPS client then pays the CA loading it pays against the real fal.ai."""
    import certifi

    bundle = workdir / "ca-bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + Path(emulator_ca).read_text())
    return str(bundle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (median; default 5, 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a fast look: fewer runs per figure (noisier)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--in-process-emulator", action="store_true",
                        help="run the fal emulator in the bench's own process (sharing its GIL with the pack) "
                             "instead of a process of its own")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    runs = args.runs or (2 if args.quick else 5)
    wanted = args.only or SECTIONS

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="fal-audio-bench-"))
    if args.in_process_emulator:
        import fal_emulator

        emulator = fal_emulator.FalEmulator(key=KEY, workdir=workdir / "emulator")
        arrangement = "in the bench's own process (--in-process-emulator: it shares the GIL with the pack)"
    else:
        emulator = RemoteEmulator(key=KEY, workdir=workdir / "emulator")
        arrangement = "in a process of its own"
    try:
        emulator.start()
        # Before any client is built: the real fal_client and httpx read these.
        for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AUDIO_CREDENTIALS"):
            os.environ.pop(name, None)
        os.environ.update(emulator.client_env())
        os.environ["SSL_CERT_FILE"] = _real_ca_bundle(emulator.ca_path, workdir)
        os.environ["FAL_AUDIO_OUTPUT_DIR"] = str(workdir / "output")
        os.environ["FAL_AUDIO_DATA_DIR"] = str(workdir / "data")
        say(f"fal emulator on 127.0.0.1:{emulator.port}, {arrangement}; results and journal in {workdir}")

        say(f"code under test: {_code_version()}")
        say("load average (1, 5, 15 min) at start: %.2f %.2f %.2f on %d cores" % (*os.getloadavg(), os.cpu_count()))
        report = Report()
        section = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal section
            say(f"  ({name}: {time.perf_counter() - section:.0f} s)")
            section = time.perf_counter()

        if "import" in wanted:
            import_figures(report, runs, workdir)
            lap("import")
        bench = Bench(emulator, runs, quick=args.quick)
        for name in SECTIONS[1:]:
            if name in wanted:
                if name == "memory":
                    bench.memory(report, workdir)
                else:
                    getattr(bench, name)(report)
                lap(name)
        report.summary()
        bench.close()
        say("load average (1, 5, 15 min) at end: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
