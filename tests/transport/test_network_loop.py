"""The fal connections outlive a prompt's event loop (ComfyUI 0.21 runs each prompt with asyncio.run),
and awaiting a call on the process-wide network loop behaves like awaiting it directly."""

import asyncio
import threading

import pytest

from fal_emulator import CDN_HOSTS, QUEUE_HOSTS
from support import defaults, pack_module, run_node

LYRIA = "FalAudioLyria2"


def test_a_second_prompt_reuses_the_connections_to_the_queue_and_the_file_host(fal, nodes):
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=0.5))
    run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x", seed=1))
    first = list(fal.tunnels)  # (connections left open by an earlier test may have served this one)

    (audio,) = run_node(nodes[LYRIA], **defaults(nodes[LYRIA], prompt="x", seed=2))  # a new event loop
    assert audio["waveform"].shape[-1] == 22050 and len(fal.submissions) == 2 and len(fal.downloads) == 2
    new = fal.tunnels[len(first):]
    assert [host for host in new if host in CDN_HOSTS] == []  # the download reused the file host connection
    # Submit and result reused the queue connection; only the status stream (its own client) opened one.
    assert len([host for host in new if host in QUEUE_HOSTS]) <= 1


def test_cancelling_the_caller_cancels_the_network_side_and_waits_for_its_end():
    gateway = pack_module("transport.gateway")
    seen = []
    started = threading.Event()

    async def step():
        seen.append(threading.current_thread().name)
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # cleanup that takes a while (closing a connection, a partial file)
            seen.append("cleaned up")
            raise

    async def prompt():
        task = asyncio.ensure_future(gateway.on_network(step()))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return list(seen)  # as the caller's await ended

    assert asyncio.run(prompt()) == ["fal-audio-network", "cleaned up"]


def test_a_shielded_step_on_the_network_loop_runs_to_its_end_despite_cancel():
    """core.aio.finish (the submit) keeps its meaning: Cancel is held back until the step ends."""
    gateway = pack_module("transport.gateway")
    aio = pack_module("core.aio")

    async def submit():
        await asyncio.sleep(0.3)
        return "request-id"

    async def prompt():
        task = asyncio.ensure_future(aio.finish(gateway.on_network(submit())))
        await asyncio.sleep(0.05)
        task.cancel()
        return await task

    assert asyncio.run(prompt()) == ("request-id", True)


def test_errors_on_the_network_loop_reach_the_caller_as_they_are():
    gateway = pack_module("transport.gateway")

    async def failing():
        raise gateway.HTTPError(422, "bad field")

    with pytest.raises(gateway.HTTPError) as caught:
        asyncio.run(gateway.on_network(failing()))
    assert caught.value.status_code == 422


@pytest.mark.parametrize("every, reported", [(0.0, True), (60.0, False)])
def test_download_progress_is_shown_at_most_every_so_often(fal, nodes, comfy, monkeypatch, every, reported):
    """Each progress report hops from the network thread to the prompt's loop: a report per block made a
    short download a third slower, so reports come at most every PROGRESS_EVERY seconds."""
    monkeypatch.setattr(pack_module("transport.gateway"), "PROGRESS_EVERY", every)
    fal.set_handler("fal-ai/lyria2", lambda payload: fal.file_result(seconds=30.0, rate=48000, channels=2))
    (audio,) = run_node(nodes["FalAudioLyria2"], unique_id="7", **defaults(nodes["FalAudioLyria2"], prompt="p"))
    assert audio["waveform"].shape[-1] == 30 * 48000
    percents = [text for text in comfy.texts() if text.startswith("Downloading ") and text.endswith("%")]
    assert bool(percents) == reported
    if reported:  # 5.8 MB in 1 MiB blocks: a report after each block but the last
        assert percents == sorted(percents, key=lambda t: int(t.split()[-1][:-1])) and len(percents) >= 4
