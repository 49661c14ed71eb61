"""Issue 3: every model node sends exactly the request fal's docs describe, and returns AUDIO.

Payloads are compared whole, field names as fal's API docs spell them: with the widget
defaults, and with every widget set to something else. Audio inputs are checked from the
uploaded bytes back to the clip that was wired in; batches, takes and ACE-Step chaining
are checked by what comes out of the node.
"""

import math

import pytest
import torch

from support import curated, defaults, pack_module, run_node


ACE_DEFAULTS = {
    "number_of_steps": 27, "scheduler": "euler", "guidance_type": "apg", "granularity_scale": 10,
    "guidance_interval": 0.5, "guidance_interval_decay": 0.0, "guidance_scale": 15.0, "minimum_guidance_scale": 3.0,
    "tag_guidance_scale": 5.0, "lyric_guidance_scale": 1.5}
ACE_CUSTOM = {
    "number_of_steps": 60, "scheduler": "heun", "guidance_type": "cfg_star", "granularity_scale": 25,
    "guidance_interval": 0.75, "guidance_interval_decay": 0.25, "guidance_scale": 12.5, "minimum_guidance_scale": 2.5,
    "tag_guidance_scale": 7.5, "lyric_guidance_scale": 2.5}

DR_LYRICS = "[00:10.00]Moonlight spills through broken blinds\n[00:13.20]Your shadow dances on the dashboard shrine"
YUE_LYRICS = "[verse]\nStaring at the sunset, colors paint the sky\n\n[chorus]\nEvery road you take, I'll be there"
MINIMAX_LYRICS = "## Fast and Limitless\nIn the heart of the code, where dreams collide\n##"


def tone(seconds, rate=8000, channels=1, freq=220.0):
    """A [1, C, T] AUDIO: channel c is a sine at freq * (c + 1), amplitude 0.5."""
    t = torch.arange(int(round(seconds * rate)), dtype=torch.float64) / rate
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * freq * (c + 1) * t) for c in range(channels)])
    return {"waveform": wave.float().unsqueeze(0).contiguous(), "sample_rate": rate}


def batch_of(*audios):
    return {"waveform": torch.cat([a["waveform"] for a in audios]), "sample_rate": audios[0]["sample_rate"]}


def peak_hz(audio, item=0, channel=0):
    wave = audio["waveform"][item, channel]
    return int(torch.fft.rfft(wave).abs().argmax()) * audio["sample_rate"] / wave.shape[-1]


# Per node: endpoint, response file field, the required text a user must type, the audio sockets
# (socket -> (request field, clip seconds for the defaults run)), the exact default payload
# (without seed and uploaded URLs), and a value other than the default for every widget with its payload.
SPECS = {
    "FalAudioLyria2": dict(
        endpoint="fal-ai/lyria2", text={"prompt": "ambient river, gentle piano"},
        default_payload={"prompt": "ambient river, gentle piano", "negative_prompt": "low quality"},
        custom={"prompt": "driving synthwave, 120 BPM", "negative_prompt": "vocals, slow tempo"},
        custom_payload={"prompt": "driving synthwave, 120 BPM", "negative_prompt": "vocals, slow tempo"}),
    "FalAudioAceStep": dict(
        endpoint="fal-ai/ace-step", text={"tags": "lofi, hiphop, chill"},
        default_payload={"tags": "lofi, hiphop, chill", "duration": 60.0, **ACE_DEFAULTS},
        custom={"tags": "rock, guitar", "lyrics": "[verse]\nhello world", "duration": 95.5, **ACE_CUSTOM},
        custom_payload={"tags": "rock, guitar", "lyrics": "[verse]\nhello world", "duration": 95.5, **ACE_CUSTOM}),
    "FalAudioAceStepPromptToAudio": dict(
        endpoint="fal-ai/ace-step/prompt-to-audio", text={"prompt": "a lofi song about the boardwalk"},
        default_payload={"prompt": "a lofi song about the boardwalk", "instrumental": False, "duration": 60.0,
                         **ACE_DEFAULTS},
        custom={"prompt": "epic orchestral", "instrumental": True, "duration": 30.0, **ACE_CUSTOM},
        custom_payload={"prompt": "epic orchestral", "instrumental": True, "duration": 30.0, **ACE_CUSTOM}),
    "FalAudioAceStepInpaint": dict(
        endpoint="fal-ai/ace-step/audio-inpaint", text={"tags": "lofi"}, sockets={"audio": ("audio_url", 30.0)},
        default_payload={"start_time_relative_to": "start", "start_time": 0.0, "end_time_relative_to": "start",
                         "end_time": 30.0, "tags": "lofi", "variance": 0.5, **ACE_DEFAULTS},
        custom={"start_time_relative_to": "end", "start_time": 1.5, "end_time_relative_to": "end", "end_time": 0.5,
                "tags": "jazz", "lyrics": "[chorus]\nla la", "variance": 0.75, **ACE_CUSTOM},
        custom_payload={"start_time_relative_to": "end", "start_time": 1.5, "end_time_relative_to": "end",
                        "end_time": 0.5, "tags": "jazz", "lyrics": "[chorus]\nla la", "variance": 0.75, **ACE_CUSTOM}),
    "FalAudioAceStepOutpaint": dict(
        endpoint="fal-ai/ace-step/audio-outpaint", text={"tags": "lofi"}, sockets={"audio": ("audio_url", 1.0)},
        default_payload={"extend_before_duration": 0.0, "extend_after_duration": 30.0, "tags": "lofi",
                         **ACE_DEFAULTS},
        custom={"extend_before_duration": 2.5, "extend_after_duration": 12.0, "tags": "jazz",
                "lyrics": "[outro]\nbye", **ACE_CUSTOM},
        custom_payload={"extend_before_duration": 2.5, "extend_after_duration": 12.0, "tags": "jazz",
                        "lyrics": "[outro]\nbye", **ACE_CUSTOM}),
    "FalAudioAceStepAudioToAudio": dict(
        endpoint="fal-ai/ace-step/audio-to-audio", text={"tags": "jazz", "original_tags": "lofi"},
        sockets={"audio": ("audio_url", 1.0)},
        default_payload={"edit_mode": "remix", "original_tags": "lofi", "tags": "jazz",
                         **ACE_DEFAULTS},
        custom={"edit_mode": "lyrics", "original_tags": "lofi, chill", "original_lyrics": "[verse]\nold words",
                "original_seed": 4242, "tags": "lofi, chill", "lyrics": "[verse]\nnew words", **ACE_CUSTOM},
        custom_payload={"edit_mode": "lyrics", "original_tags": "lofi, chill", "original_lyrics": "[verse]\nold words",
                        "original_seed": 4242, "tags": "lofi, chill", "lyrics": "[verse]\nnew words", **ACE_CUSTOM}),
    "FalAudioCassetteMusic": dict(
        endpoint="cassetteai/music-generator", file_key="audio_file", text={"prompt": "chill hip-hop, D minor"},
        default_payload={"prompt": "chill hip-hop, D minor", "duration": 30},
        custom={"prompt": "upbeat funk, 110 BPM", "duration": 50},
        custom_payload={"prompt": "upbeat funk, 110 BPM", "duration": 50}),
    "FalAudioCassetteSoundEffects": dict(
        endpoint="cassetteai/sound-effects-generator", file_key="audio_file", text={"prompt": "dog barking in rain"},
        default_payload={"prompt": "dog barking in rain", "duration": 10},
        custom={"prompt": "thunder", "duration": 25},
        custom_payload={"prompt": "thunder", "duration": 25}),
    "FalAudioDiffRhythm": dict(
        endpoint="fal-ai/diffrhythm", text={"lyrics": DR_LYRICS},
        sockets={"reference_audio": ("reference_audio_url", 10.5)},  # DiffRhythm needs >= 10 s
        default_payload={"lyrics": DR_LYRICS, "music_duration": "95s", "cfg_strength": 4.0, "scheduler": "euler",
                         "num_inference_steps": 32},
        custom={"lyrics": "[00:01.00]One line only", "style_prompt": "pop", "music_duration": "285s",
                "cfg_strength": 6.5, "scheduler": "implicit_adams", "num_inference_steps": 50},
        custom_payload={"lyrics": "[00:01.00]One line only", "style_prompt": "pop", "music_duration": "285s",
                        "cfg_strength": 6.5, "scheduler": "implicit_adams", "num_inference_steps": 50}),
    "FalAudioElevenLabsSoundEffects": dict(
        endpoint="fal-ai/elevenlabs/sound-effects", text={"text": "Spacious braam for a trailer"},
        default_payload={"text": "Spacious braam for a trailer", "prompt_influence": 0.3},
        custom={"text": "glass shattering", "duration_seconds": 4.5, "prompt_influence": 0.75},
        custom_payload={"text": "glass shattering", "duration_seconds": 4.5, "prompt_influence": 0.75}),
    "FalAudioYuE": dict(
        endpoint="fal-ai/yue", text={"lyrics": YUE_LYRICS, "genres": "inspiring female uplifting pop"},
        default_payload={"lyrics": YUE_LYRICS, "genres": "inspiring female uplifting pop"},
        custom={"lyrics": "[chorus]\nla\n[verse]\nda", "genres": "dark male rock"},
        custom_payload={"lyrics": "[chorus]\nla\n[verse]\nda", "genres": "dark male rock"}),
    "FalAudioMMAudioTextToAudio": dict(
        endpoint="fal-ai/mmaudio-v2/text-to-audio", text={"prompt": "Indian holy music"},
        default_payload={"prompt": "Indian holy music", "num_steps": 25, "duration": 8.0, "cfg_strength": 4.5,
                         "mask_away_clip": False},
        custom={"prompt": "rain on a tin roof", "negative_prompt": "music", "num_steps": 40, "duration": 12.5,
                "cfg_strength": 6.0, "mask_away_clip": True},
        custom_payload={"prompt": "rain on a tin roof", "negative_prompt": "music", "num_steps": 40, "duration": 12.5,
                        "cfg_strength": 6.0, "mask_away_clip": True}),
    "FalAudioMiniMaxMusic": dict(
        endpoint="fal-ai/minimax-music", text={"prompt": MINIMAX_LYRICS},
        sockets={"reference_audio": ("reference_audio_url", 16.0)},
        default_payload={"prompt": MINIMAX_LYRICS},
        custom={"prompt": "## Short and sweet\nla la la\n##"},
        custom_payload={"prompt": "## Short and sweet\nla la la\n##"}),
}

SEEDED = {"FalAudioLyria2", "FalAudioAceStep", "FalAudioAceStepPromptToAudio", "FalAudioAceStepInpaint",
          "FalAudioAceStepOutpaint", "FalAudioAceStepAudioToAudio", "FalAudioMMAudioTextToAudio"}
ACE_NODES = {name for name in SPECS if name.startswith("FalAudioAceStep")}


def serve(fal, name, seconds=0.5, rate=16000, channels=2, fmt="wav", freq=440.0):
    """Answer the node's endpoint with a file in the node's result field (plus ACE-Step's extra outputs)."""
    spec = SPECS[name]

    def handler(payload):
        result = fal.file_result(key=spec.get("file_key", "audio"), seconds=seconds, rate=rate, channels=channels,
                                 fmt=fmt, freq=freq)
        if name in ACE_NODES:
            result.update(seed=payload.get("seed", 0), tags=payload.get("tags", ""), lyrics=payload.get("lyrics", ""))
        return result

    fal.set_handler(spec["endpoint"], handler)


def widget_names(cls):
    """Widget inputs (what the user sets in the node), not sockets."""
    spec = cls.INPUT_TYPES()
    names = []
    for section in ("required", "optional"):
        for name, (kind, *_) in spec.get(section, {}).items():
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                names.append(name)
    return names


def widget_default(cls, name):
    spec = cls.INPUT_TYPES()
    kind, *options = {**spec["required"], **spec.get("optional", {})}[name]
    opts = options[0] if options else {}
    return opts.get("default", kind[0] if isinstance(kind, list) else None)


def upload_for(fal, url):
    matches = [u for u in fal.uploads if u.url == url]
    assert matches, f"{url} was never uploaded"
    return matches[0]


def assert_decodes_to(data, clip):
    back = pack_module("media.audio").decode(data)
    assert back["sample_rate"] == clip["sample_rate"]
    assert back["waveform"].shape == clip["waveform"].shape
    assert torch.allclose(back["waveform"], clip["waveform"], atol=1e-4)


def assert_specs_cover(nodes, specs):
    """The specs' nodes are curated nodes (data/nodes/*.json), each on its spec's endpoint."""
    assert set(specs) <= curated(nodes)
    for name, spec in specs.items():
        assert nodes[name].ENDPOINT == spec["endpoint"]


def assert_default_payload_sent(fal, spec, clips, seeded):
    """The one request went to the spec's endpoint with its default payload (seed 0 if the model takes one)
    and each connected clip uploaded into its field."""
    (submission,) = fal.submissions
    assert submission.endpoint == spec["endpoint"]
    expected = dict(spec["default_payload"])
    if seeded:
        expected["seed"] = 0
    for socket, (field, _) in spec.get("sockets", {}).items():
        expected[field] = submission.payload.get(field)
        assert_decodes_to(upload_for(fal, expected[field]).data, clips[socket])
    assert submission.payload == expected


def test_every_model_node_has_a_spec(nodes):
    assert_specs_cover(nodes, SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_default_payload(fal, nodes, name):
    spec, cls = SPECS[name], nodes[name]
    serve(fal, name)
    clips = {socket: tone(seconds) for socket, (_, seconds) in spec.get("sockets", {}).items()}
    # Only required text is typed in; every other widget keeps its default.
    assert all(widget_default(cls, field) == "" for field in spec["text"])
    run_node(cls, **defaults(cls, **spec["text"]), **clips)
    assert_default_payload_sent(fal, spec, clips, seeded=name in SEEDED)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_widget_changed(fal, nodes, name):
    """Every widget set to a non-default value (takes=2 too) reaches fal under the docs' field name."""
    spec, cls = SPECS[name], nodes[name]
    custom = {**spec["custom"], "seed": 1234, "takes": 2}
    assert set(custom) == set(widget_names(cls)), "every widget must be set in this test"
    for field, value in custom.items():
        assert value != widget_default(cls, field), f"{field} is left at its default"
    serve(fal, name)
    clips = {socket: tone(max(2.0, seconds), channels=2) for socket, (_, seconds) in spec.get("sockets", {}).items()}
    if name == "FalAudioMiniMaxMusic":
        clips = {"reference_audio": tone(15.5, channels=2)}
    (audio, *_) = run_node(cls, **custom, **clips)
    assert audio["waveform"].shape[0] == 2
    assert_two_takes_sent(fal, spec["custom_payload"], name in SEEDED, spec.get("sockets", {}), clips)


def assert_two_takes_sent(fal, want: dict, seeded: bool, sockets: dict, clips: dict):
    """fal received `want` twice (takes=2 from seed 1234: seeds 1234 and 1235 where the model takes one),
    each audio socket's field holding an upload of exactly the clip wired in."""
    payloads = [s.payload for s in fal.submissions]
    expected = [dict(want), dict(want)]
    if seeded:
        payloads.sort(key=lambda p: p["seed"])
        expected[0]["seed"], expected[1]["seed"] = 1234, 1235
    for payload, one in zip(payloads, expected):
        for socket, (field, _) in sockets.items():
            one[field] = payload.get(field)
            assert_decodes_to(upload_for(fal, one[field]).data, clips[socket])
    assert payloads == expected


FORMAT_CASES = ([("FalAudioCassetteMusic", fmt, ch) for fmt in ("wav", "mp3", "flac") for ch in (1, 2)]
                + [("FalAudioElevenLabsSoundEffects", fmt, ch) for fmt in ("mp3", "wav", "flac") for ch in (1, 2)]
                + [("FalAudioMMAudioTextToAudio", "flac", 2), ("FalAudioYuE", "mp3", 2)])


@pytest.mark.parametrize("name,fmt,channels", FORMAT_CASES)
def test_audio_output_for_every_format_and_layout(fal, nodes, name, fmt, channels):
    serve(fal, name, seconds=0.5, rate=22050, channels=channels, fmt=fmt, freq=441.0)
    (audio,) = run_node(nodes[name], **defaults(nodes[name], **SPECS[name]["text"]))
    wave = audio["waveform"]
    assert audio["sample_rate"] == 22050
    assert wave.dtype == torch.float32 and wave.dim() == 3 and wave.shape[:2] == (1, channels)
    assert abs(wave.shape[-1] - 11025) <= (2400 if fmt == "mp3" else 0)  # mp3 adds encoder delay/padding
    # The content survives: channel c is a sine at 441 * (c + 1) Hz of amplitude 0.5.
    for c in range(channels):
        assert abs(peak_hz(audio, channel=c) - 441.0 * (c + 1)) < 5
        assert 0.4 < float(wave[0, c].abs().max()) <= 0.6


def test_cassette_reads_its_audio_file_field(fal, nodes):
    """CassetteAI answers with `audio_file`, not `audio`: an `audio` field alone is not taken for it."""
    name = "FalAudioCassetteSoundEffects"
    fal.set_handler(SPECS[name]["endpoint"], lambda p: {
        **fal.file_result(key="audio_file", seconds=0.5, rate=8000, channels=1, freq=300.0),
        **fal.file_result(key="audio", seconds=0.5, rate=8000, channels=1, freq=900.0)})
    (audio,) = run_node(nodes[name], **defaults(nodes[name], prompt="door creak"))
    assert abs(peak_hz(audio) - 300.0) < 5


AUDIO_INPUT_CASES = [
    ("FalAudioAceStepInpaint", dict(end_time=1.5), 1),
    ("FalAudioAceStepOutpaint", {}, 2),
    ("FalAudioAceStepAudioToAudio", {}, 1),
    ("FalAudioDiffRhythm", {}, 2),
    ("FalAudioMiniMaxMusic", {}, 1),
]


@pytest.mark.parametrize("name,extra,channels", AUDIO_INPUT_CASES)
def test_audio_input_is_uploaded_as_the_clip(fal, nodes, name, extra, channels):
    spec, cls = SPECS[name], nodes[name]
    ((socket, (field, seconds)),) = spec["sockets"].items()
    clip = tone(max(seconds, 2.0), rate=11025, channels=channels, freq=330.0)
    serve(fal, name)
    run_node(cls, **defaults(cls, **spec["text"], **extra), **{socket: clip})
    (upload,) = fal.uploads
    assert upload.content_type == "audio/wav" and upload.url.endswith(".wav")
    assert_decodes_to(upload.data, clip)
    assert fal.submissions[0].payload[field] == upload.url


def test_batch_input_makes_one_request_per_clip_in_order(fal, nodes):
    name = "FalAudioAceStepInpaint"
    audio_io = pack_module("media.audio")
    first, second = tone(2.0, freq=250.0), tone(2.0, freq=375.0)

    def handler(payload):
        heard = peak_hz(audio_io.decode(upload_for(fal, payload["audio_url"]).data))
        return {**fal.file_result(seconds=0.5, rate=8000, channels=1, freq=2 * heard), "seed": payload["seed"],
                "tags": payload["tags"], "lyrics": ""}

    fal.set_handler(SPECS[name]["endpoint"], handler)
    audio, *_ = run_node(nodes[name], **defaults(nodes[name], tags="lofi", start_time=0.5, end_time=1.5, seed=9),
                         audio=batch_of(first, second))
    assert len(fal.submissions) == 2 and len(fal.uploads) == 2
    assert sorted(s.payload["audio_url"] for s in fal.submissions) == sorted(u.url for u in fal.uploads)
    assert {s.payload["seed"] for s in fal.submissions} == {9}
    assert tuple(audio["waveform"].shape) == (2, 1, 4000)
    # Output i is the result for input clip i.
    assert abs(peak_hz(audio, item=0) - 500.0) < 5 and abs(peak_hz(audio, item=1) - 750.0) < 5


def test_batch_input_for_a_reference_model(fal, nodes):
    name = "FalAudioMiniMaxMusic"
    serve(fal, name, seconds=0.5, rate=8000, channels=2)
    audio, = run_node(nodes[name], **defaults(nodes[name], prompt="la la"),
                      reference_audio=batch_of(tone(15.5, freq=200.0), tone(15.5, freq=300.0)))
    assert len(fal.submissions) == 2
    assert {s.payload["reference_audio_url"] for s in fal.submissions} == {u.url for u in fal.uploads}
    assert len(fal.uploads) == 2
    assert tuple(audio["waveform"].shape) == (2, 2, 4000)


def test_takes_send_seed_and_seed_plus_one_and_return_a_batch(fal, nodes):
    name = "FalAudioAceStep"

    def handler(payload):
        return {**fal.file_result(seconds=0.5, rate=8000, channels=2, freq=300.0 if payload["seed"] == 77 else 500.0),
                "seed": payload["seed"], "tags": payload["tags"], "lyrics": "[inst]"}

    fal.set_handler(SPECS[name]["endpoint"], handler)
    audio, tags, lyrics, seed = run_node(nodes[name], **defaults(nodes[name], tags="lofi", seed=77, takes=2))
    assert sorted(s.payload["seed"] for s in fal.submissions) == [77, 78]
    assert tuple(audio["waveform"].shape) == (2, 2, 4000) and audio["waveform"].dtype == torch.float32
    assert abs(peak_hz(audio, item=0) - 300.0) < 5 and abs(peak_hz(audio, item=1) - 500.0) < 5
    assert (tags, lyrics, seed) == ("lofi", "[inst]", 77)  # of the first take


def test_takes_without_a_model_seed_still_make_separate_requests(fal, nodes):
    name = "FalAudioCassetteMusic"
    serve(fal, name, seconds=0.5, rate=8000, channels=2)
    audio, = run_node(nodes[name], **defaults(nodes[name], prompt="funk", takes=3))
    assert [s.payload for s in fal.submissions] == [{"prompt": "funk", "duration": 30}] * 3
    assert tuple(audio["waveform"].shape) == (3, 2, 4000)


def fal_file(fal, url):
    """The bytes fal serves at one of its file URLs."""
    import urllib.parse

    return fal._files[urllib.parse.unquote(urllib.parse.urlsplit(url).path)].data


def test_ace_step_chain_wires_audio_tags_lyrics_and_seed(fal, nodes):
    audio_io = pack_module("media.audio")
    answers = {  # endpoint -> (freq of the returned track, lyrics the service reports)
        "fal-ai/ace-step": (300.0, "[verse]\nwritten by ace"),
        "fal-ai/ace-step/audio-inpaint": (400.0, None),
        "fal-ai/ace-step/audio-outpaint": (500.0, None),
        "fal-ai/ace-step/audio-to-audio": (600.0, None),
    }
    for endpoint, (freq, lyrics) in answers.items():
        def handler(payload, freq=freq, lyrics=lyrics):
            return {**fal.file_result(seconds=3.0, rate=8000, channels=2, freq=freq), "seed": payload["seed"],
                    "tags": payload["tags"], "lyrics": lyrics if lyrics is not None else payload.get("lyrics", "")}
        fal.set_handler(endpoint, handler)

    song, tags, lyrics, seed = run_node(nodes["FalAudioAceStep"], **defaults(
        nodes["FalAudioAceStep"], tags="lofi, chill", duration=30.0, seed=5))
    assert (tags, lyrics, seed) == ("lofi, chill", "[verse]\nwritten by ace", 5)

    painted, p_tags, p_lyrics, _ = run_node(nodes["FalAudioAceStepInpaint"], **defaults(
        nodes["FalAudioAceStepInpaint"], tags=tags, lyrics=lyrics, start_time=1.0, end_time=2.0), audio=song)
    extended, *_ = run_node(nodes["FalAudioAceStepOutpaint"], **defaults(
        nodes["FalAudioAceStepOutpaint"], tags=p_tags, lyrics=p_lyrics, extend_after_duration=10.0), audio=painted)
    remixed, *_ = run_node(nodes["FalAudioAceStepAudioToAudio"], **defaults(
        nodes["FalAudioAceStepAudioToAudio"], original_tags=tags, original_lyrics=lyrics, original_seed=seed,
        tags="jazz, sax", lyrics="[verse]\nnew words", edit_mode="lyrics"), audio=song)

    inpaint, outpaint, remix = [s.payload for s in fal.submissions[1:]]
    assert inpaint == {"start_time_relative_to": "start", "start_time": 1.0, "end_time_relative_to": "start",
                       "end_time": 2.0, "tags": "lofi, chill", "lyrics": "[verse]\nwritten by ace", "variance": 0.5,
                       **ACE_DEFAULTS, "audio_url": inpaint["audio_url"], "seed": 0}
    assert outpaint == {"extend_before_duration": 0.0, "extend_after_duration": 10.0, "tags": "lofi, chill",
                        "lyrics": "[verse]\nwritten by ace", **ACE_DEFAULTS, "audio_url": outpaint["audio_url"],
                        "seed": 0}
    assert remix == {"edit_mode": "lyrics", "original_tags": "lofi, chill",
                     "original_lyrics": "[verse]\nwritten by ace", "original_seed": 5, "tags": "jazz, sax",
                     "lyrics": "[verse]\nnew words", **ACE_DEFAULTS, "audio_url": remix["audio_url"], "seed": 0}
    # Each edit got fal's own URL of the file wired into it (issue 13: nothing re-encoded or uploaded).
    results = [job.result["audio"]["url"] for job in sorted(fal.jobs, key=lambda job: job.submitted_at)]
    assert [inpaint["audio_url"], outpaint["audio_url"], remix["audio_url"]] == [results[0], results[1], results[0]]
    assert fal.uploads == []
    assert_decodes_to(fal_file(fal, outpaint["audio_url"]), painted)
    assert abs(peak_hz(audio_io.decode(fal_file(fal, outpaint["audio_url"]))) - 400.0) < 5
    assert abs(peak_hz(extended) - 500.0) < 5 and abs(peak_hz(remixed) - 600.0) < 5


def test_ace_step_outputs_when_the_service_leaves_fields_out(fal, nodes):
    """tags/lyrics/seed the response lacks (or sends as null) come out as "", "" and 0, ready to wire."""
    fal.set_handler("fal-ai/ace-step/prompt-to-audio", lambda p: {
        **fal.file_result(seconds=0.5, rate=8000, channels=1), "tags": None, "seed": None})
    audio, tags, lyrics, seed = run_node(nodes["FalAudioAceStepPromptToAudio"],
                                         **defaults(nodes["FalAudioAceStepPromptToAudio"], prompt="a song"))
    assert (tags, lyrics, seed) == ("", "", 0)
    assert tuple(audio["waveform"].shape) == (1, 1, 4000)
