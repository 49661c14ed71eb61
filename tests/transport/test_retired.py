"""Endpoints fal no longer serves: the node fails at once (no retry, nothing charged), naming the
endpoint and the node to use instead; the old nodes still load and run where fal still serves them."""

import pytest

from support import defaults, run_node

YUE_LYRICS = "[verse]\nStaring at the sunset\n\n[chorus]\nEvery road you take"


def submits(fal, endpoint):
    return [r for r in fal.requests if r == ("POST", f"queue.fal.run/{endpoint}")]


def test_retired_yue_names_its_successors(fal, nodes):
    fal.retire("fal-ai/yue")
    cls = nodes["FalAudioYuE"]
    with pytest.raises(Exception) as error:
        run_node(cls, **defaults(cls, lyrics=YUE_LYRICS, genres="uplifting pop"))
    assert str(error.value) == (
        "YuE (fal): fal.ai no longer serves fal-ai/yue: it answered 404 Not Found (Application 'fal-ai/yue' not "
        "found) to the request, so nothing was run or charged. Use the MiniMax Music v2.6 (fal) node or the "
        "ACE-Step Text to Audio (fal) node instead.")
    assert len(submits(fal, "fal-ai/yue")) == 1  # no retry
    assert fal.submissions == []


def test_retired_elevenlabs_v1_names_v2(fal, nodes):
    fal.retire("fal-ai/elevenlabs/sound-effects")
    cls = nodes["FalAudioElevenLabsSoundEffects"]
    with pytest.raises(Exception) as error:
        run_node(cls, **defaults(cls, text="glass shattering", takes=2))
    message = str(error.value)
    assert message.startswith(
        "ElevenLabs Sound Effects (fal): fal.ai no longer serves fal-ai/elevenlabs/sound-effects:")
    assert message.endswith("Use the ElevenLabs Sound Effects v2 (fal) node instead.")
    assert len(submits(fal, "fal-ai/elevenlabs/sound-effects")) == 2  # one per take, none retried


def test_a_retired_endpoint_that_comes_back_runs_normally(fal, nodes):
    """The refused submit leaves no claim behind in the journal: the next run submits and pays once."""
    fal.retire("fal-ai/yue")
    cls = nodes["FalAudioYuE"]
    inputs = defaults(cls, lyrics=YUE_LYRICS, genres="pop")
    with pytest.raises(Exception):
        run_node(cls, **inputs)
    fal.reset()
    fal.set_handler("fal-ai/yue", lambda p: fal.file_result(seconds=0.5, rate=8000, channels=2, fmt="mp3"))
    (audio,) = run_node(cls, **inputs)
    assert audio["waveform"].shape[:2] == (1, 2)
    assert [s.payload for s in fal.submissions] == [{"lyrics": YUE_LYRICS, "genres": "pop"}]


def test_other_nodes_say_the_endpoint_is_gone_without_a_successor(fal, nodes):
    fal.retire("fal-ai/lyria2")
    cls = nodes["FalAudioLyria2"]
    with pytest.raises(Exception) as error:
        run_node(cls, **defaults(cls, prompt="ambient"))
    assert str(error.value).startswith("fal.ai no longer serves fal-ai/lyria2: it answered 404 Not Found")
    assert "instead" not in str(error.value)
