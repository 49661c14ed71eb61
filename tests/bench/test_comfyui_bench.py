"""bench/comfyui_overhead.py reads a node's time off ComfyUI's websocket: the parsing, on recorded message
sequences shaped as ComfyUI v0.21.0 sends them (no ComfyUI started here, nothing timed)."""

import json
import struct

import pytest

import support


@pytest.fixture(scope="module")
def bench():
    return support.script_module("bench/comfyui_overhead.py")


@pytest.fixture(scope="module")
def harness():
    return support.script_module("tests/integration/comfyui_harness.py")


def text_frame(node: str, text: str) -> bytes:
    """A progress text as ComfyUI's send_progress_text puts it on the wire: event type 3, then the node id's
    length, the node id and the text."""
    node_bytes = node.encode()
    return struct.pack(">I", 3) + struct.pack(">I", len(node_bytes)) + node_bytes + text.encode()


def executing(node, prompt="p1"):
    return {"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": prompt}}


def state(prompt, **nodes):
    return {"type": "progress_state", "data": {"prompt_id": prompt, "nodes": {
        node: {"state": value, "value": 1, "max": 1, "node_id": node} for node, value in nodes.items()}}}


def test_the_harness_decodes_progress_text_and_json_as_the_bench_reads_them(bench, harness):
    assert harness.decode_message(False, text_frame("12", "Downloading 36%")) == {
        "type": bench.PROGRESS_TEXT, "data": {"node": "12", "text": "Downloading 36%"}}
    assert harness.decode_message(False, text_frame("1", "Done · ≈$0.10"))["data"]["text"] == "Done · ≈$0.10"
    assert harness.decode_message(False, struct.pack(">I", 1) + b"\x00" * 16) == {
        "type": "binary", "data": {"kind": 1}}
    message = executing("1")
    assert harness.decode_message(True, json.dumps(message)) == message


def test_node_span_from_executing_to_the_next_executing_of_the_prompt(bench):
    timeline = [
        (0.5, executing("1", prompt="p0")),  # an earlier prompt's run of the same node id
        (0.9, executing(None, prompt="p0")),
        (1.0, {"type": "execution_start", "data": {"prompt_id": "p1"}}),
        (1.1, executing("1")),
        (1.2, {"type": "progress_text", "data": {"node": "1", "text": "Submitting"}}),
        (1.3, {"type": "progress_text", "data": {"node": "9", "text": "another node's text"}}),
        (1.4, executing("3", prompt="p2")),  # another prompt's event does not end the span
        (3.0, {"type": "progress_text", "data": {"node": "1", "text": "Done in 2.0 s"}}),
        (3.01, state("p1", **{"1": "running"})),
        (3.02, state("p1", **{"1": "finished", "2": "running"})),
        (3.03, state("p1", **{"1": "finished", "2": "finished"})),
        (3.05, executing("2")),
        (3.2, {"type": "progress_text", "data": {"node": "1", "text": "after the span"}}),
        (3.4, executing(None)),
    ]
    span = bench.node_span(timeline, "p1", "1")
    assert (span["start"], span["end"], span["next_node"]) == (1.1, 3.05, "2")
    assert span["last_text"] == 3.0
    assert span["finished"] == 3.02
    assert span["texts"] == [(1.2, "Submitting"), (3.0, "Done in 2.0 s")]
    assert span["messages"] == {"progress_text": 3, "executing": 1, "progress_state": 3}

    # The prompt's last node: the span ends at `executing` with node None.
    last = bench.node_span(timeline, "p1", "2")
    assert (last["start"], last["end"], last["next_node"], last["last_text"]) == (3.05, 3.4, None, None)


def test_node_span_of_a_node_that_did_not_execute(bench):
    """A cached node gets no `executing` message: nothing to time (the script refuses such a run)."""
    timeline = [(1.0, executing("2")), (1.5, executing(None))]
    span = bench.node_span(timeline, "p1", "1")
    assert span["start"] is None and span["end"] is None


def test_phases_cut_the_node_time_at_the_emulators_requests(bench):
    span = {"start": 10.0, "end": 12.1, "last_text": 12.09}
    requests = [(10.004, 10.005, "submit", "POST", "queue.fal.run/fal-ai/lyria2"),
                (10.01, 12.0, "stream", "GET", "..."),
                (12.01, 12.011, "result", "GET", "..."),
                (12.02, 12.05, "download", "GET", "...")]
    cut = bench.phases(span, requests, job_start=10.005, job_seconds=2.0)
    assert cut == pytest.approx({
        "before submit": 0.005, "job": 2.0, "completion noticed": 0.005, "result + file GET": 0.04,
        "file served -> node's last text": 0.04, "ComfyUI hand-off (last text -> next executing)": 0.01})
    # Together they are the node's whole time.
    assert sum(cut.values()) == pytest.approx(span["end"] - span["start"])


def test_texts_after_a_moment_by_first_word(bench):
    texts = [(1.0, "Downloading"), (1.5, "Downloading 54%"), (2.0, "Downloading 100%"), (2.01, "Decoding"),
             (2.04, "Done in 2.0 s")]
    assert bench.texts_after(texts, 1.9) == pytest.approx({"Downloading": 0.1, "Decoding": 0.11, "Done": 0.14})
    assert bench.texts_after(texts, None) == {}
