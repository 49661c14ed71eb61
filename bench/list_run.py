#!/usr/bin/env python
"""A 1,000-item list run (issue 22): one Lyria 2 node given a list of 1,000 prompts, as ComfyUI runs a list
input (the node once per item, all in one prompt, at once), against the local fal emulator where every job
takes 2 s, with the fal Client's cap of 16 requests in flight.

    python bench/list_run.py [--items 1000] [--cap 16] [--job-seconds 2] [--url postgresql://...]

The emulator runs in a process of its own (bench/remote_emulator.py), the pack is loaded as ComfyUI loads it
and its real job path runs: price, claim in the journal, submit, wait, download, decode, keep, settle (the
books: a SQLite file in a temp folder, or the PostgreSQL database of --url). Each result is a short clip
(1 s, 16 kHz stereo), so what the 1,000 outputs hold is known exactly.

Figures: the wall time against the target 1.3 × (items / cap) × one job (and one node's own time for one
job), the most requests in flight, and the peak resident memory above the start (sampled every 10 ms) against
what the outputs' waveforms hold. A measurement, not a test: Markdown on stdout, progress on stderr.
"""

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import run as bench_run  # noqa: E402 - bench/run.py: the pack as ComfyUI loads it, the emulator's set-up
import support  # noqa: E402
from remote_emulator import RemoteEmulator, set_file_result  # noqa: E402

TARGET = 1.3  # × (items / cap) × one job
CLIP_SECONDS, CLIP_RATE, CLIP_CHANNELS = 1.0, 16000, 2


class PeakRss:
    """The process's resident memory, sampled every 10 ms in a thread while the block runs."""

    def __enter__(self):
        self.peak, self._stop = bench_run._rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, bench_run._rss())
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, bench_run._rss())


def list_run(emulator, items: int, cap: int, job_seconds: float) -> None:
    bench = bench_run.Bench(emulator, 1)
    node = bench.nodes[bench_run.LYRIA]
    slots = support.pack_module("transport.slots", bench_run.PACK_NAME).SLOTS
    set_file_result(emulator, "fal-ai/lyria2", seconds=CLIP_SECONDS, rate=CLIP_RATE, channels=CLIP_CHANNELS)
    emulator.set_timing("fal-ai/lyria2", run_seconds=job_seconds)
    (options,) = bench.nodes["FalAudioClient"]().create("", 300.0, 3600.0, "", max_concurrent_requests=cap)
    bench.warm_up()
    one = bench.node_call(bench_run.LYRIA, **bench.lyria(seed=bench_run.fresh_seed(), fal_client=options))
    bench_run.say(f"one node, one job: {one:.2f} s; now {items} items, cap {cap}")
    seeds = [bench_run.fresh_seed() for _ in range(items)]
    outputs = []

    async def the_list():
        runs = [node().generate(**support.defaults(node, prompt=f"item {n}: ambient river", seed=seed,
                                                   fal_client=options))
                for n, seed in enumerate(seeds)]
        outputs.extend(await asyncio.gather(*runs))

    gc.collect()
    slots.peak = 0
    before = bench_run._rss()
    with PeakRss() as memory:
        wall = bench.prompt(the_list)
    held = sum(output[0]["waveform"].nelement() * output[0]["waveform"].element_size() for output in outputs)
    bench.close()
    target = TARGET * (items / cap) * job_seconds
    print(f"{items} items of one Lyria 2 node in one prompt, {job_seconds:g} s jobs, cap {cap} in flight; "
          f"each output {CLIP_SECONDS:g} s {CLIP_RATE // 1000} kHz {CLIP_CHANNELS} ch.\n")
    print("| figure | measured | target | ratio |\n|---|---:|---|---:|")
    print(f"| wall time of the list | {wall:.1f} s | ≤ {target:.1f} s ({TARGET:g} × {items}/{cap} × "
          f"{job_seconds:g} s) | {wall / target:.2f} |")
    print(f"| one node, one job (for scale) | {one:.2f} s | | |")
    print(f"| most requests in flight | {slots.peak} | ≤ {cap} | {slots.peak / cap:.2f} |")
    increase = memory.peak - before
    print(f"| peak RSS above the start | {increase / 2**20:.0f} MiB | the outputs hold {held / 2**20:.0f} MiB | "
          f"{increase / held:.2f} |")
    print(f"| beyond the outputs, per item | {(increase - held) / items / 1024:.0f} KiB | | |")
    bench_run.say(f"outputs: {len(outputs)}; RSS before {before / 2**20:.0f} MiB, peak {memory.peak / 2**20:.0f} MiB,"
                  f" after {bench_run._rss() / 2**20:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--cap", type=int, default=16)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--url", default="", help="keep the books on this PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fal-audio-list-"))
    emulator = RemoteEmulator(key=bench_run.KEY, workdir=workdir / "emulator")
    try:
        emulator.start()
        for name in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AUDIO_CREDENTIALS", "FAL_AUDIO_DATABASE_URL"):
            os.environ.pop(name, None)
        os.environ.update(emulator.client_env())
        os.environ["SSL_CERT_FILE"] = bench_run._real_ca_bundle(emulator.ca_path, workdir)
        os.environ["FAL_AUDIO_OUTPUT_DIR"] = str(workdir / "output")
        os.environ["FAL_AUDIO_DATA_DIR"] = str(workdir / "data")
        if args.url:
            os.environ["FAL_AUDIO_DATABASE_URL"] = args.url
        bench_run.say(f"code under test: {bench_run._code_version()}; load average %.2f %.2f %.2f on %d cores"
                      % (*os.getloadavg(), os.cpu_count()))
        list_run(emulator, args.items, args.cap, args.job_seconds)
        bench_run.say("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
