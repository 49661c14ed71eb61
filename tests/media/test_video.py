"""Issue 6: MMAudio v2 video-to-audio (frames -> MP4 -> fal -> soundtrack), and every AUDIO
output of the pack is exactly what core CreateVideo/SaveVideo and VHS Video Combine take."""

import io
import json
import math
from fractions import Fraction

import pytest
import torch

from emulator_models import FakeVideo, serve_every_endpoint, video_result
from support import CANARY_KEY, PACK_DIR, defaults, load_pack, pack_module, run_node

VIDEO = "FalAudioMMAudioVideoToAudio"
ENDPOINT = "fal-ai/mmaudio-v2"


def frames(count, height=32, width=48):
    """An IMAGE batch [N, H, W, 3] in 0..1: a moving gradient, different in every frame."""
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    t = torch.arange(count, dtype=torch.float32).view(count, 1, 1) / max(count, 1)
    shape = (count, height, width)
    rgb = [((x + t) % 1.0).expand(shape), ((y + 2 * t) % 1.0).expand(shape), ((x + y) / 2 % 1.0).expand(shape)]
    return torch.stack(rgb, dim=-1).contiguous()


def probe_video(data):
    """(frame count, average rate, width, height, pixel format) of an MP4."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.average_rate, stream.width, stream.height, stream.codec_context.pix_fmt


def upload_of(fal, url):
    return next(u for u in fal.uploads if u.url == url)


# ------------------------------------------------------------------ MMAudio video to audio


def test_frames_become_an_mp4_and_the_soundtrack_matches_their_length(fal, nodes):
    seen = {}

    def handler(payload):
        seen["video"] = probe_video(upload_of(fal, payload["video_url"]).data)
        return video_result(fal, 3.4)  # the model returns a little more than asked: trimmed

    fal.set_handler(ENDPOINT, handler)
    images = frames(36, height=33, width=47)  # odd sizes: padded to even for yuv420p
    (audio,) = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], images=images, frame_rate=12.0,
                                                  prompt="waves on a pebble beach", seed=5))
    assert seen["video"] == (36, 12, 48, 34, "yuv420p")
    assert fal.uploads[0].content_type == "video/mp4"
    payload = fal.submissions[0].payload
    assert payload == {"video_url": fal.uploads[0].url, "prompt": "waves on a pebble beach", "num_steps": 25,
                       "duration": 3.0, "cfg_strength": 4.5, "mask_away_clip": False, "seed": 5}
    waveform = audio["waveform"]
    assert audio["sample_rate"] == 44100 and tuple(waveform.shape) == (1, 2, 3 * 44100)
    assert waveform.dtype == torch.float32 and waveform.is_contiguous()
    # The decoder read the MP4's AAC stream: a 440 Hz sine on the left channel.
    spectrum = torch.fft.rfft(waveform[0, 0]).abs()
    assert abs(int(spectrum.argmax()) / 3.0 - 440) < 2


def test_a_short_soundtrack_is_padded_with_silence_to_the_frames_length(fal, nodes):
    fal.set_handler(ENDPOINT, lambda payload: video_result(fal, 1.5, rate=48000, channels=1))
    (audio,) = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], images=frames(60, 16, 16), frame_rate=29.97))
    seconds = 60 / 29.97
    assert audio["sample_rate"] == 48000 and tuple(audio["waveform"].shape) == (1, 1, round(seconds * 48000))
    assert fal.submissions[0].payload["duration"] == round(seconds, 3)
    assert "prompt" in fal.submissions[0].payload  # empty: the video alone decides the sound
    assert audio["waveform"][0, 0, -4800:].abs().max() == 0
    assert audio["waveform"][0, 0, :48000].abs().max() > 0.3


def test_a_chosen_duration_is_sent_and_the_result_still_fits_the_frames(fal, nodes):
    fal.set_handler(ENDPOINT, lambda payload: video_result(fal, payload["duration"]))
    (audio,) = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], images=frames(48, 16, 16), duration=1.0,
                                                  takes=2))
    assert [s.payload["duration"] for s in fal.submissions] == [1.0, 1.0]
    assert sorted(s.payload["seed"] for s in fal.submissions) == [0, 1]
    assert len({upload.data for upload in fal.uploads}) == 1  # the same MP4 for both takes
    assert tuple(audio["waveform"].shape) == (2, 2, 2 * 44100)


def test_requeueing_the_same_frames_pays_once(fal, nodes):
    fal.set_handler(ENDPOINT, lambda payload: video_result(fal, 1.0))
    inputs = defaults(nodes[VIDEO], images=frames(24, 16, 16), prompt="rain")
    first = run_node(nodes[VIDEO], **inputs)[0]
    second = run_node(nodes[VIDEO], **inputs)[0]
    journal = pack_module("money.journal").current()
    assert len(fal.submissions) == 1 and len(fal.uploads) == 1, (
        [(s.request_id, s.payload) for s in fal.submissions], [len(u.data) for u in fal.uploads],
        journal._connect().execute("SELECT identity, state, request_id, detail FROM requests").fetchall(),
        journal._connect().execute("SELECT state, request_id, detail FROM ledger").fetchall())
    assert torch.equal(first["waveform"], second["waveform"])


@pytest.mark.parametrize("count, fps, overrides, field, rule", [
    (721, 24.0, {}, "images", "has 721 frames, 30.04 s at 24 fps; MMAudio takes at most 30 s of video (pack limit)"),
    (301, 10.0, {}, "images", "Send at most 300 frames at this rate"),
    (20, 24.0, {}, "images", "MMAudio needs at least 1 s of video (pack limit)"),
    (48, 24.0, {"duration": 3.0}, "duration", "is 3 s but the frames last 2.00 s"),
    (48, 24.0, {"duration": 0.5}, "duration", "is 0.5; it must be 1-30 (or 0: not set)"),
    (48, 24.0, {"seed": 65535, "takes": 2}, "seed", "must be 0-65535 for this model (with 2 takes, at most 65534)"),
])
def test_impossible_clips_are_refused_before_any_request(fal, nodes, count, fps, overrides, field, rule):
    with pytest.raises(ValueError) as caught:
        run_node(nodes[VIDEO], **defaults(nodes[VIDEO], images=frames(count, 8, 8), frame_rate=fps, **overrides))
    message = str(caught.value)
    assert message.startswith(f"MMAudio v2 Video to Audio (fal): '{field}' ")
    assert rule in message and message.endswith("Nothing was sent to fal.")
    assert fal.submissions == [] and fal.uploads == [] and fal.requests == []


def test_the_video_node_is_declared_like_the_text_node(nodes):
    cls = nodes[VIDEO]
    assert cls.ENDPOINT == ENDPOINT and cls.RESULT_FILE == "video" and cls.RETURN_TYPES == ("AUDIO",)
    required, optional = cls.INPUT_TYPES()["required"], cls.INPUT_TYPES()["optional"]
    # Frames or a VIDEO: both optional sockets (exactly one must be connected); widgets in their saved order.
    assert list(required)[:2] == ["frame_rate", "prompt"] and list(optional) == ["images", "video", "fal_client"]
    assert optional["images"][0] == "IMAGE" and optional["video"][0] == "VIDEO"
    assert required["frame_rate"][1]["default"] == 24.0
    assert required["duration"][1]["default"] == 0.0 and "match the frames" in required["duration"][1]["tooltip"]
    assert "30 s" in optional["images"][1]["tooltip"] and "pack limit" in optional["images"][1]["tooltip"]
    text = nodes["FalAudioMMAudioTextToAudio"].INPUT_TYPES()["required"]
    assert [n for n in text if n != "duration"] == [n for n in required if n not in ("frame_rate", "duration")]
    assert required["seed"][1]["max"] == 65535 and required["seed"][1]["control_after_generate"] == "fixed"


def grey_mp4(seconds, fps, sound=False):
    """An H.264 MP4 of grey frames (what Load Video gives the node), optionally with its own AAC track."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        if sound:
            track = out.add_stream("aac", rate=8000, layout="mono")
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 100, np.uint8), format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound:
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate = 8000
            out.mux(track.encode(chunk))
            out.mux(track.encode(None))
    return buffer.getvalue()


def test_a_video_is_uploaded_as_its_file_and_its_own_length_counts(fal, nodes):
    data = grey_mp4(2.5, 10, sound=True)
    fal.set_handler(ENDPOINT, lambda payload: video_result(fal, 3.0))  # a little more than asked: trimmed
    (audio,) = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], video=FakeVideo(io.BytesIO(data)), frame_rate=5.0,
                                                  prompt="rain on a tin roof", takes=2))
    assert len(fal.uploads) == 1 and fal.uploads[0].data == data and fal.uploads[0].content_type == "video/mp4"
    assert fal.uploads[0].file_name.endswith(".mp4")
    # The video's 2.5 s, not frame_rate (5 fps would make nothing of it): sent, priced and returned.
    assert [s.payload["duration"] for s in fal.submissions] == [2.5, 2.5]
    assert {s.payload["video_url"] for s in fal.submissions} == {fal.uploads[0].url}
    assert fal.submissions[0].payload["prompt"] == "rain on a tin roof"
    assert audio["sample_rate"] == 44100 and tuple(audio["waveform"].shape) == (2, 2, round(2.5 * 44100))


def test_requeueing_the_same_video_pays_once(fal, nodes):
    fal.set_handler(ENDPOINT, lambda payload: video_result(fal, 2.0))
    data = grey_mp4(2.0, 8)
    first = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], video=FakeVideo(io.BytesIO(data))))[0]
    second = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], video=FakeVideo(io.BytesIO(data))))[0]
    assert len(fal.submissions) == 1 and len(fal.uploads) == 1
    assert torch.equal(first["waveform"], second["waveform"])


def test_a_video_longer_than_the_duration_asked_keeps_its_length(fal, nodes):
    fal.set_handler(ENDPOINT, lambda payload: video_result(fal, payload["duration"], rate=16000, channels=1))
    (audio,) = run_node(nodes[VIDEO], **defaults(nodes[VIDEO], video=FakeVideo(io.BytesIO(grey_mp4(4.0, 12))),
                                                  duration=1.5))
    assert fal.submissions[0].payload["duration"] == 1.5
    assert tuple(audio["waveform"].shape) == (1, 1, 4 * 16000)  # padded with silence to the video's 4 s
    assert audio["waveform"][0, 0, -16000:].abs().max() == 0


@pytest.mark.parametrize("inputs, field, rule", [
    (dict(), "images", "is not connected: connect video frames (an IMAGE batch) to 'images' or a VIDEO to 'video'"),
    (dict(images=frames(48, 8, 8), video=FakeVideo(io.BytesIO(grey_mp4(2.0, 8)))), "images",
     "and 'video' are both connected: connect only one of them"),
    (dict(video=FakeVideo(io.BytesIO(grey_mp4(31.0, 2)))), "video",
     "lasts 31.00 s at 2 fps; MMAudio takes at most 30 s of video (pack limit)"),
    (dict(video=FakeVideo(io.BytesIO(grey_mp4(0.5, 8)))), "video", "MMAudio needs at least 1 s of video"),
    (dict(video=FakeVideo(io.BytesIO(grey_mp4(2.0, 8))), duration=3.0), "duration",
     "is 3 s but the video lasts 2.00 s"),
    (dict(video=FakeVideo(io.BytesIO(b"RIFF\x24\x00\x00\x00WAVEfmt "))), "video", "states no length"),
    (dict(video="clip.mp4"), "video", "is not a VIDEO"),
])
def test_a_missing_doubled_or_impossible_video_is_refused_before_any_request(fal, nodes, inputs, field, rule):
    with pytest.raises(ValueError) as caught:
        run_node(nodes[VIDEO], **defaults(nodes[VIDEO], **inputs))
    message = str(caught.value)
    assert message.startswith(f"MMAudio v2 Video to Audio (fal): '{field}' ")
    assert rule in message and message.endswith("Nothing was sent to fal.")
    assert fal.submissions == [] and fal.uploads == [] and fal.requests == []


# ------------------------------------------------------------------ every AUDIO output, into a video

LYRICS = "[00:00.00][verse] la la la\n[00:05.00][chorus] oh oh oh"
REFERENCE = {"waveform": 0.3 * torch.sin(torch.linspace(0, 31 * 2 * math.pi * 220, 31 * 4000)).view(1, 1, -1),
             "sample_rate": 4000}  # 31 s: long enough for every reference/edit rule; small to upload


def finished_request(fal, endpoint):
    """The id of a request made to `endpoint` elsewhere (not by a node here), finished with a 1 s stereo file."""
    import httpx

    fal.set_handler(endpoint, lambda payload: fal.file_result(seconds=1.0, rate=44100, channels=2))
    with httpx.Client(verify=False, headers={"Authorization": f"Key {CANARY_KEY}"}) as client:
        return client.post(f"https://queue.fal.run/{endpoint}", json={"prompt": "a"}).json()["request_id"]


def minimal_inputs(fal, name, cls):
    """Widget defaults plus the smallest valid value for every required socket and empty text."""
    values = defaults(cls)
    if name == VIDEO:  # its frames are an optional socket (or a VIDEO instead)
        values["images"] = frames(24, 16, 16)
    for field, (kind, *options) in cls.INPUT_TYPES()["required"].items():
        if kind == "AUDIO":
            values[field] = REFERENCE
        elif kind == "IMAGE":
            values[field] = frames(24, 16, 16)
        elif kind == "STRING" and field == "url":
            values[field] = fal.audio_file(seconds=1.0, rate=44100, channels=2)
        elif kind == "STRING" and field == "request_id":  # fal Result by Request ID: a request fal finished
            values[field] = finished_request(fal, values["endpoint_id"])
        elif kind == "STRING" and not values.get(field):
            values[field] = LYRICS
        elif field not in values:
            pytest.fail(f"{name}: no minimal value known for required input {field!r} of type {kind!r}; "
                        "teach minimal_inputs() about it")
    return values


def mux_like_create_video(images, fps, audio):
    """What core CreateVideo -> SaveVideo does with IMAGE + AUDIO (VideoFromComponents.save_to)."""
    import av

    rate = int(audio["sample_rate"])
    waveform = audio["waveform"][0, :, :math.ceil(rate / fps * images.shape[0])]
    layout = {1: "mono", 2: "stereo"}[waveform.shape[0]]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("h264", rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout=layout)
        for image in images:
            frame = av.VideoFrame.from_ndarray((image * 255).clamp(0, 255).byte().cpu().numpy(), format="rgb24")
            out.mux(video.encode(frame.reformat(format="yuv420p")))
        out.mux(video.encode(None))
        frame = av.AudioFrame.from_ndarray(waveform.float().cpu().contiguous().numpy(), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    with av.open(io.BytesIO(buffer.getvalue())) as back:
        return back.streams.audio[0].channels, back.streams.audio[0].sample_rate


# Nodes generated from the catalog, and the flagships (curated specs that show fal's whole response, as they did as
# generated nodes), are left to tests/nodes/test_catalog_generated.py, which muxes their outputs.
AUDIO_NODES = sorted(name for name, cls in load_pack().NODE_CLASS_MAPPINGS.items()
                     if "AUDIO" in cls.RETURN_TYPES and not cls.__module__.endswith(".nodes.catalog") and not any(
                         o.get("as") == "response" for o in (getattr(cls, "SPEC", None) or {}).get("outputs", ())))


@pytest.mark.parametrize("name", AUDIO_NODES)
def test_every_audio_output_fits_create_video_and_video_combine(fal, nodes, name):
    cls = nodes[name]
    serve_every_endpoint(fal, cls)
    result = run_node(cls, **minimal_inputs(fal, name, cls))
    outputs = [value for kind, value in zip(cls.RETURN_TYPES, result) if kind == "AUDIO"]
    assert outputs, name
    for audio in outputs:
        assert isinstance(audio, dict) and {"waveform", "sample_rate"} <= set(audio), name
        waveform, rate = audio["waveform"], audio["sample_rate"]
        assert type(rate) is int and rate > 0, (name, rate)
        assert isinstance(waveform, torch.Tensor) and waveform.device.type == "cpu", name
        assert waveform.dtype == torch.float32 and waveform.is_contiguous(), name
        assert waveform.dim() == 3 and waveform.shape[0] == 1 and waveform.shape[1] in (1, 2), (name, waveform.shape)
        assert waveform.shape[2] > 0 and bool(torch.isfinite(waveform).all()), name
        # Core CreateVideo/SaveVideo: waveform[0] as planar float for an AAC stream.
        assert mux_like_create_video(frames(2, 16, 16), 2.0, audio) == (waveform.shape[1], rate), name
        # VHS Video Combine: interleaved float32 frames for ffmpeg's f32le input.
        interleaved = waveform.squeeze(0).transpose(0, 1).numpy()
        assert interleaved.shape == (waveform.shape[2], waveform.shape[1]) and interleaved.dtype == "float32"


# ------------------------------------------------------------------ the example workflow


def widget_names(spec):
    """Widget names in the editor's order: required then optional, sockets skipped, a seed's
    'control after generate' value right after it."""
    names = []
    for section in ("required", "optional"):
        for field, (kind, *options) in spec.get(section, {}).items():
            if kind in ("AUDIO", "IMAGE", "FAL_CLIENT", "VIDEO", "LATENT", "MODEL"):
                continue
            names.append(field)
            if options and options[0].get("control_after_generate"):
                names.append(f"{field}:control")
    return names


def test_example_workflow_wires_frames_through_mmaudio_into_a_saved_video(nodes):
    workflow = json.loads((PACK_DIR / "example_workflows" / "mmaudio_video_soundtrack.json").read_text())
    assert workflow["version"] == 0.4 and {"groups", "config", "extra"} <= set(workflow)
    by_id = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] == max(by_id)
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    types = {node["type"] for node in workflow["nodes"]}
    assert {VIDEO, "CreateVideo", "SaveVideo"} <= types
    for link_id, source, source_slot, target, target_slot, kind in workflow["links"]:
        output = by_id[source]["outputs"][source_slot]
        assert link_id in output["links"] and output["type"] == kind
        socket = by_id[target]["inputs"][target_slot]
        assert socket["link"] == link_id and socket["type"] == kind
    mmaudio = next(node for node in workflow["nodes"] if node["type"] == VIDEO)
    names = widget_names(nodes[VIDEO].INPUT_TYPES())
    assert len(mmaudio["widgets_values"]) == len(names)
    values = dict(zip(names, mmaudio["widgets_values"]))
    assert values["seed:control"] == "fixed" and values["duration"] == 0 and values["prompt"]
    create = next(node for node in workflow["nodes"] if node["type"] == "CreateVideo")
    linked = {socket["name"]: socket["link"] for socket in create["inputs"]}
    audio_link = next(link for link in workflow["links"] if link[0] == linked["audio"])
    assert by_id[audio_link[1]]["type"] == VIDEO and audio_link[5] == "AUDIO"
    # Picture and sound at the same rate: one value feeds frame_rate and CreateVideo's fps.
    fps_links = [link for link in workflow["links"] if link[5] == "FLOAT"]
    assert {by_id[link[3]]["type"] for link in fps_links} == {VIDEO, "CreateVideo"}
    assert len({link[1] for link in fps_links}) == 1
    # The frames last frames / fps seconds, within the node's 1-30 s.
    repeat = next(node for node in workflow["nodes"] if node["type"] == "RepeatImageBatch")
    fps = by_id[fps_links[0][1]]["widgets_values"][0]
    assert values["frame_rate"] == fps and 1 <= repeat["widgets_values"][0] / fps <= 30
