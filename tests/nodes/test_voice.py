"""Issue 11: text to speech, transcription, stems and voice isolation."""

import json
import math

import pytest
import torch

from support import defaults, pack_module, run_node

TTS = "FalAudioElevenLabsTTSv3"
MINIMAX = "FalAudioMiniMaxSpeech28HD"
KOKORO = "FalAudioKokoroAmericanEnglish"
WIZPER = "FalAudioWizper"
DEMUCS = "FalAudioDemucs"
ISOLATION = "FalAudioElevenLabsAudioIsolation"
STEM_HZ = {"vocals": 440.0, "drums": 110.0, "bass": 55.0, "other": 660.0, "guitar": 330.0, "piano": 880.0}


def tone(seconds, rate=16000, channels=2, freq=220.0):
    t = torch.arange(int(round(seconds * rate)), dtype=torch.float64) / rate
    wave = torch.stack([0.5 * torch.sin(2 * math.pi * freq * (c + 1) * t) for c in range(channels)])
    return {"waveform": wave.float().unsqueeze(0).contiguous(), "sample_rate": rate}


def peak_hz(audio, item=0, channel=0):
    wave = audio["waveform"][item, channel]
    return round(int(torch.fft.rfft(wave).abs().argmax()) * audio["sample_rate"] / wave.shape[-1])


def run(nodes, name, **inputs):
    return run_node(nodes[name], unique_id="11", **defaults(nodes[name], **inputs))


def payload(fal):
    (submission,) = fal.submissions
    return {k: v for k, v in submission.payload.items() if k != "audio_url"}


def no_request_went_out(fal):
    assert fal.submissions == [] and fal.uploads == [] and fal.rejected == []


# --- text to speech ---------------------------------------------------------------------------------


def test_elevenlabs_tts_default_payload_audio_and_no_timestamps(fal, nodes):
    audio, timings = run(nodes, TTS, text="Hello there, welcome to the show.")
    assert payload(fal) == {"text": "Hello there, welcome to the show.", "voice": "Rachel", "stability": 0.5,
                            "apply_text_normalization": "auto", "timestamps": False}
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape[:2] == (1, 1)
    assert audio["waveform"].shape[-1] == round(len("Hello there, welcome to the show.") * 0.06 * 44100)
    assert json.loads(timings) == []


def test_elevenlabs_tts_every_widget_and_word_timings(fal, nodes):
    audio, timings = run(nodes, TTS, text="[whispers] Keep it down.", voice="Brian", stability=1.0,
                         apply_text_normalization="off", timestamps=True, language_code="de")
    assert payload(fal) == {"text": "[whispers] Keep it down.", "voice": "Brian", "stability": 1.0,
                            "apply_text_normalization": "off", "timestamps": True, "language_code": "de"}
    words = json.loads(timings)
    assert [w["text"] for w in words] == ["[whispers]", "Keep", "it", "down."]
    assert words[-1]["end"] == pytest.approx(audio["waveform"].shape[-1] / audio["sample_rate"], abs=0.01)


def test_elevenlabs_typed_voice_id_replaces_the_list(fal, nodes):
    run(nodes, TTS, text="Cloned voice here.", voice="Aria", voice_id="  21m00Tcm4TlvDq8ikWAM ")
    assert payload(fal)["voice"] == "21m00Tcm4TlvDq8ikWAM"


def test_minimax_speech_default_payload_nests_settings(fal, nodes):
    (audio,) = run(nodes, MINIMAX, prompt="Hello <#0.5#> world (laughs)")
    assert payload(fal) == {
        "prompt": "Hello <#0.5#> world (laughs)",
        "voice_setting": {"voice_id": "Wise_Woman", "speed": 1.0, "vol": 1.0, "pitch": 0,
                          "english_normalization": False},
        "audio_setting": {"format": "mp3", "sample_rate": 32000, "bitrate": 128000, "channel": 1},
        "normalization_setting": {"enabled": True, "target_loudness": -18.0, "target_range": 8.0,
                                  "target_peak": -0.5}}
    assert audio["sample_rate"] == 32000 and audio["waveform"].shape[1] == 1


def test_minimax_speech_every_widget(fal, nodes):
    (audio,) = run(nodes, MINIMAX, prompt="Numbers: 1, 2, 3.", voice_id="Deep_Voice_Man", speed=1.5, vol=2.5,
                   pitch=-3, emotion="happy", english_normalization=True, language_boost="English", format="flac",
                   sample_rate="44100", bitrate="256000", channel="2", normalization=False, target_loudness=-23.0,
                   target_range=5.0, target_peak=-1.0, modify_pitch=20, modify_intensity=-10, modify_timbre=5,
                   custom_voice_id="my_clone_01")
    assert payload(fal) == {
        "prompt": "Numbers: 1, 2, 3.", "language_boost": "English",
        "voice_setting": {"voice_id": "my_clone_01", "speed": 1.5, "vol": 2.5, "pitch": -3, "emotion": "happy",
                          "english_normalization": True},
        "audio_setting": {"format": "flac", "sample_rate": 44100, "bitrate": 256000, "channel": 2},
        "normalization_setting": {"enabled": False, "target_loudness": -23.0, "target_range": 5.0,
                                  "target_peak": -1.0},
        "voice_modify": {"pitch": 20, "intensity": -10, "timbre": 5}}
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape[1] == 2


def test_kokoro_payload_and_audio(fal, nodes):
    (audio,) = run(nodes, KOKORO, prompt="The future belongs to those who dream.")
    assert payload(fal) == {"prompt": "The future belongs to those who dream.", "voice": "af_heart", "speed": 1.0}
    fal.reset()
    (audio,) = run(nodes, KOKORO, prompt="Faster now.", voice="am_onyx", speed=1.75)
    assert payload(fal) == {"prompt": "Faster now.", "voice": "am_onyx", "speed": 1.75}
    assert audio["sample_rate"] == 24000 and audio["waveform"].shape[-1] == round(len("Faster now.") * 0.06 * 24000)


@pytest.mark.parametrize("name, field, limit", [(TTS, "text", 5000), (MINIMAX, "prompt", 9999),
                                                (KOKORO, "prompt", 10000)])
def test_text_limits_are_refused_before_paying(fal, nodes, name, field, limit):
    run(nodes, name, **{field: "a" * limit})  # the limit itself is fine
    assert len(fal.submissions) == 1
    fal.reset()
    with pytest.raises(ValueError) as caught:
        run(nodes, name, **{field: "a" * (limit + 1)})
    assert f"'{field}' has {limit + 1} characters" in str(caught.value) and f"at most {limit}" in str(caught.value)
    no_request_went_out(fal)


@pytest.mark.parametrize("name, field", [(TTS, "text"), (MINIMAX, "prompt"), (KOKORO, "prompt")])
def test_empty_text_is_refused(fal, nodes, name, field):
    with pytest.raises(ValueError) as caught:
        run(nodes, name, **{field: "  \n "})
    assert f"'{field}' is required and is empty" in str(caught.value)
    no_request_went_out(fal)


@pytest.mark.parametrize("name, inputs, field", [
    (TTS, dict(text="hi", voice="Nobody"), "voice"),
    (TTS, dict(text="hi", apply_text_normalization="sometimes"), "apply_text_normalization"),
    (MINIMAX, dict(prompt="hi", emotion="bored"), "emotion"),
    (MINIMAX, dict(prompt="hi", format="pcm"), "format"),
    (MINIMAX, dict(prompt="hi", sample_rate="48000"), "sample_rate"),
    (KOKORO, dict(prompt="hi", voice="bf_emma"), "voice"),
    (WIZPER, dict(task="summarize"), "task"),
    (WIZPER, dict(language="klingon"), "language"),
    (DEMUCS, dict(model="spleeter"), "model"),
    (DEMUCS, dict(output_format="ogg"), "output_format"),
])
def test_unknown_enum_values_are_refused(fal, nodes, name, inputs, field):
    if nodes[name].AUDIO_INPUTS:
        inputs = dict(inputs, audio=tone(3.0))
    with pytest.raises(ValueError) as caught:
        run(nodes, name, **inputs)
    assert f"'{field}' is {inputs[field]!r}, which is not one of" in str(caught.value)
    no_request_went_out(fal)


@pytest.mark.parametrize("name, inputs, field, rule", [
    (TTS, dict(text="hi", voice_id="not an id!"), "voice_id", "not an ElevenLabs voice id"),
    (TTS, dict(text="hi", language_code="english"), "language_code", "two-letter ISO 639-1"),
    (TTS, dict(text="hi", stability=1.5), "stability", "is 1.5; it must be 0-1"),
    (MINIMAX, dict(prompt="hi", custom_voice_id="9 lives"), "custom_voice_id", "not a MiniMax voice id"),
    (MINIMAX, dict(prompt="hi", speed=3.0), "speed", "is 3; it must be 0.5-2"),
    (MINIMAX, dict(prompt="hi", vol=0.0), "vol", "is 0; it must be 0.01-10"),
    (MINIMAX, dict(prompt="hi", modify_timbre=101), "modify_timbre", "is 101; it must be -100-100 (or 0: not set)"),
    (KOKORO, dict(prompt="hi", speed=6.0), "speed", "is 6; it must be 0.1-5"),
])
def test_out_of_range_settings_are_refused(fal, nodes, name, inputs, field, rule):
    with pytest.raises(ValueError) as caught:
        run(nodes, name, **inputs)
    assert f"'{field}'" in str(caught.value) and rule in str(caught.value)
    no_request_went_out(fal)


def test_speech_is_billed_by_characters(nodes):
    for name, field in [(TTS, "text"), (MINIMAX, "prompt"), (KOKORO, "prompt")]:
        node = nodes[name]()
        (request, _, _), = node.requests(defaults(nodes[name], **{field: "x" * 1234}))
        assert node.billing(request, {}) == {"seconds": None, "characters": 1234}
        assert node.SPEC["price"] == {"characters": field}


# --- transcription ----------------------------------------------------------------------------------


def test_wizper_is_a_text_only_result_with_srt_and_chunks(fal, nodes, comfy):
    song = tone(6.0)
    text, subtitles, chunks = run(nodes, WIZPER, audio=song)
    assert payload(fal) == {"task": "transcribe", "language": "en", "merge_chunks": True, "max_segment_len": 29.0}
    assert text == ("Streetlights hum a quiet tune Coffee steam and a paper moon Slow down, let the city breathe")
    assert subtitles == ("1\n00:00:00,000 --> 00:00:02,500\nStreetlights hum a quiet tune\n\n"
                         "2\n00:00:02,500 --> 00:00:05,000\nCoffee steam and a paper moon\n\n"
                         "3\n00:00:05,000 --> 00:00:06,000\nSlow down, let the city breathe\n")
    assert json.loads(chunks) == [{"timestamp": [0.0, 2.5], "text": " Streetlights hum a quiet tune"},
                                  {"timestamp": [2.5, 5.0], "text": " Coffee steam and a paper moon"},
                                  {"timestamp": [5.0, None], "text": " Slow down, let the city breathe"}]
    assert fal.downloads == []  # nothing to download: the text is the result
    again = run(nodes, WIZPER, audio=song)
    assert again == (text, subtitles, chunks) and len(fal.submissions) == 1  # kept, not paid twice


def test_wizper_auto_language_is_sent_as_null_and_translate(fal, nodes):
    text, _, _ = run(nodes, WIZPER, audio=tone(2.0), language="auto", task="translate", merge_chunks=False,
                     max_segment_len=10.0)
    assert payload(fal) == {"task": "translate", "language": None, "merge_chunks": False, "max_segment_len": 10.0}
    assert text == "STREETLIGHTS HUM A QUIET TUNE"


def test_wizper_batch_joins_the_texts(fal, nodes):
    batch = {"waveform": torch.cat([tone(2.0)["waveform"], tone(2.0, freq=330.0)["waveform"]]), "sample_rate": 16000}
    text, subtitles, chunks = run(nodes, WIZPER, audio=batch)
    assert len(fal.submissions) == 2
    assert text == "Streetlights hum a quiet tune\n\nStreetlights hum a quiet tune"
    assert [c["clip"] for c in json.loads(chunks)] == [1, 2]
    assert subtitles == ("1\n00:00:00,000 --> 00:00:02,000\nStreetlights hum a quiet tune\n\n"
                         "2\n00:00:00,000 --> 00:00:02,000\nStreetlights hum a quiet tune\n")


def test_srt_timestamps_past_an_hour():
    srt = pack_module("media.subtitles").srt
    assert srt([{"timestamp": [3723.5, 3725.25], "text": "late line"}, {"timestamp": [3726, None], "text": " "}]) == \
        "1\n01:02:03,500 --> 01:02:05,250\nlate line\n"


# --- stems ------------------------------------------------------------------------------------------


def test_demucs_six_stems_each_on_its_socket_and_every_file_kept(fal, nodes, comfy):
    song = tone(4.0, rate=16000)
    stems = run(nodes, DEMUCS, audio=song)
    assert payload(fal) == {"model": "htdemucs_6s", "output_format": "mp3", "shifts": 1, "overlap": 0.25}
    assert len(stems) == 6
    for name, audio in zip(nodes[DEMUCS].RETURN_NAMES, stems):
        assert peak_hz(audio) == STEM_HZ[name], name
        assert audio["waveform"].shape == (1, 2, 64000) and audio["sample_rate"] == 16000
    kept = sorted(p.name.rsplit("_", 1)[-1] for p in (comfy.output_dir / "fal-audio").iterdir())
    assert kept == sorted(f"{name}.mp3" for name in STEM_HZ)
    assert not any("Not returned" in text for text in comfy.texts())


def test_demucs_four_stem_model_gives_silent_guitar_and_piano_and_says_so(fal, nodes, comfy):
    song = tone(3.0, rate=8000, channels=1)
    stems = dict(zip(nodes[DEMUCS].RETURN_NAMES,
                     run(nodes, DEMUCS, audio=song, model="htdemucs_ft", output_format="wav", shifts=3,
                         overlap=0.5, segment_length=7.5)))
    assert payload(fal) == {"model": "htdemucs_ft", "output_format": "wav", "shifts": 3, "overlap": 0.5,
                            "segment_length": 7.5}
    for name in ("vocals", "drums", "bass", "other"):
        assert peak_hz(stems[name]) == STEM_HZ[name]
    for name in ("guitar", "piano"):
        assert stems[name]["waveform"].shape == (1, 1, 24000) and stems[name]["sample_rate"] == 8000
        assert torch.count_nonzero(stems[name]["waveform"]) == 0
    assert "Not returned by the model, output as silence: guitar, piano" in comfy.texts()


def test_a_missing_stem_is_silence_as_long_as_the_input_not_the_stems(fal, nodes, comfy):
    fal.set_handler("fal-ai/demucs", lambda p: {
        **fal.file_result(key="vocals", seconds=1.0, rate=44100, channels=1, fmt="mp3", freq=440.0),
        "drums": None, "bass": None, "other": None, "guitar": None, "piano": None})
    stems = dict(zip(nodes[DEMUCS].RETURN_NAMES, run(nodes, DEMUCS, audio=tone(2.0, rate=16000, channels=2))))
    assert stems["vocals"]["sample_rate"] == 44100 and stems["vocals"]["waveform"].shape == (1, 1, 44100)
    for name in ("drums", "bass", "other", "guitar", "piano"):
        assert stems[name]["sample_rate"] == 16000 and stems[name]["waveform"].shape == (1, 1, 32000), name
    assert "Not returned by the model, output as silence: drums, bass, other, guitar, piano" in comfy.texts()
    assert len(fal.downloads) == 1


def test_demucs_selected_stems_are_sent_as_a_list(fal, nodes, comfy):
    stems = dict(zip(nodes[DEMUCS].RETURN_NAMES, run(nodes, DEMUCS, audio=tone(2.0), stems=" Vocals,drums ")))
    assert payload(fal)["stems"] == ["vocals", "drums"]
    assert peak_hz(stems["vocals"]) == 440 and peak_hz(stems["drums"]) == 110
    assert all(torch.count_nonzero(stems[n]["waveform"]) == 0 for n in ("bass", "other", "guitar", "piano"))
    assert len(fal.downloads) == 2
    run(nodes, DEMUCS, audio=tone(2.0, freq=300.0), stems=" , ,")
    assert "stems" not in fal.submissions[-1].payload and len(fal.downloads) == 2 + 6


def test_demucs_reuse_restores_every_stem(fal, nodes):
    song = tone(2.0)
    first = run(nodes, DEMUCS, audio=song)
    again = run(nodes, DEMUCS, audio=song)
    assert len(fal.submissions) == 1 and len(fal.downloads) == 6
    assert all(torch.equal(a["waveform"], b["waveform"]) for a, b in zip(first, again))


@pytest.mark.parametrize("inputs, rule", [
    (dict(stems="vocals, kazoo"), "names 'kazoo'"),
    (dict(stems="guitar", model="htdemucs"), "asks for guitar, which htdemucs does not make"),
    (dict(stems="vocals vocals"), "names a stem twice"),
    (dict(segment_length=0.5), "is 0.5; it must be 1-600 (or 0: not set)"),
    (dict(shifts=50), "is 50; it must be 1-10"),
])
def test_demucs_settings_are_checked_before_paying(fal, nodes, inputs, rule):
    with pytest.raises(ValueError) as caught:
        run(nodes, DEMUCS, audio=tone(2.0), **inputs)
    assert rule in str(caught.value)
    no_request_went_out(fal)


def test_demucs_is_billed_by_the_input_length(nodes):
    node = nodes[DEMUCS]()
    song = tone(2.5)
    assert node.billing({}, {"audio": song}) == {"seconds": 2.5, "characters": None}


def test_voice_isolation_returns_the_voice_as_long_as_the_input(fal, nodes):
    (voice,) = run(nodes, ISOLATION, audio=tone(3.0, rate=22050, channels=1))
    assert payload(fal) == {}
    assert fal.submissions[0].payload["audio_url"].startswith("https://")
    assert voice["sample_rate"] == 22050 and voice["waveform"].shape == (1, 1, 66150) and peak_hz(voice) == 300


@pytest.mark.parametrize("name", [WIZPER, DEMUCS, ISOLATION])
def test_wrong_audio_inputs_are_refused_before_upload(fal, nodes, name):
    for bad, rule in [({"waveform": torch.zeros(1, 3, 16000), "sample_rate": 16000}, "3 channels"),
                      ("song.wav", "is not an AUDIO value"),
                      (tone(0.05, rate=8000), "s long"),
                      ({"waveform": torch.full((1, 1, 8000), float("nan")), "sample_rate": 8000}, "NaN")]:
        with pytest.raises(ValueError) as caught:
            run(nodes, name, audio=bad)
        assert "'audio'" in str(caught.value) and rule in str(caught.value), str(caught.value)
    no_request_went_out(fal)


def test_too_long_inputs_are_refused(fal, nodes):
    for name, seconds in [(ISOLATION, 3601.0), (DEMUCS, 1801.0)]:
        with pytest.raises(ValueError) as caught:
            run(nodes, name, audio={"waveform": torch.zeros(1, 1, int(seconds * 1000)), "sample_rate": 1000})
        assert "'audio' is " in str(caught.value) and "too long" in str(caught.value)
    no_request_went_out(fal)


# --- chains -----------------------------------------------------------------------------------------


def test_song_to_stems_to_lyrics_to_ace_step_lyrics_edit(fal, nodes):
    song = tone(8.0, rate=16000)
    vocals, drums, bass, other, guitar, piano = run(nodes, DEMUCS, audio=song)
    lyrics, _, _ = run(nodes, WIZPER, audio=vocals)
    edit = nodes["FalAudioAceStepAudioToAudio"]
    fal.set_handler(edit.ENDPOINT, lambda p: {**fal.file_result(seconds=8.0, rate=16000), "tags": p["tags"],
                                              "lyrics": p["lyrics"], "seed": p["seed"]})
    out = run_node(edit, **defaults(edit, audio=song, edit_mode="lyrics", original_tags="pop", original_lyrics=lyrics,
                                    tags="pop", lyrics=lyrics.replace("quiet", "brand new")))
    sent = fal.submissions[-1].payload
    assert sent["original_lyrics"] == lyrics and "brand new tune" in sent["lyrics"]
    # Wizper heard the vocals stem, not the mix.
    vocals_upload = fal.file_bytes(fal.submissions[1].payload["audio_url"])
    assert peak_hz(pack_module("media.audio").decode(vocals_upload)) == 440
    assert out[0]["waveform"].shape[-1] == 8 * 16000


def test_the_example_chains_are_wired_as_promised(nodes):
    folder = pack_module("nodes").__file__  # the pack's folder, as ComfyUI loads it
    from pathlib import Path

    examples = Path(folder).parent.parent / "example_workflows"

    def edges(name):
        data = json.loads((examples / name).read_text(encoding="utf-8"))
        kinds = {node["id"]: node for node in data["nodes"]}
        return {(kinds[o]["type"], kinds[o]["outputs"][s]["name"], kinds[t]["type"], kinds[t]["inputs"][ts]["name"])
                for _, o, s, t, ts, _ in data["links"]}

    assert {("FalAudioKokoroAmericanEnglish", "audio", "CreateVideo", "audio"), ("EmptyImage", "IMAGE", "CreateVideo",
            "images"), ("CreateVideo", "VIDEO", "SaveVideo", "video")} <= edges("kokoro_voice_over_under_video.json")
    assert {("LoadAudio", "AUDIO", DEMUCS, "audio"), (DEMUCS, "vocals", WIZPER, "audio"),
            (WIZPER, "text", "FalAudioAceStepAudioToAudio", "original_lyrics"),
            ("LoadAudio", "AUDIO", "FalAudioAceStepAudioToAudio", "audio")} <= edges(
        "demucs_vocals_wizper_lyrics_ace_step_edit.json")
    assert {(DEMUCS, "drums", "AudioMerge", "audio1"), (DEMUCS, "bass", "AudioMerge", "audio2"),
            ("AudioMerge", "AUDIO", "SaveAudio", "audio")} <= edges("demucs_drums_bass_merge_to_save_audio.json")
    assert {("FalAudioElevenLabsSoundEffects", "audio", "AudioMerge", "audio1"), (TTS, "audio", "AudioMerge", "audio2"),
            ("AudioMerge", "AUDIO", "CreateVideo", "audio")} <= edges("elevenlabs_sfx_and_speech_under_video.json")


def test_demucs_answer_without_any_stem_is_a_clear_error(fal, nodes):
    fal.set_handler("fal-ai/demucs", lambda p: {name: None for name in STEM_HZ})
    with pytest.raises(Exception) as caught:
        run(nodes, DEMUCS, audio=tone(2.0))
    assert "fal-ai/demucs: the response has no stem file" in str(caught.value)


def test_list_items_on_one_node_instance_each_get_silence_of_their_own_input(fal, nodes, comfy):
    # ComfyUI runs the list items of one node concurrently on the same instance: what a run planned must not
    # be overwritten by the next item's plan (a missing stem is silence as long as *that* item's input).
    import asyncio

    fal.set_handler("fal-ai/demucs", lambda p: {
        **fal.file_result(key="vocals", seconds=0.5, rate=8000, channels=1, fmt="wav"),
        "drums": None, "bass": None, "other": None, "guitar": None, "piano": None})
    fal.set_timing("fal-ai/demucs", run_seconds=0.3)
    node = nodes[DEMUCS]()

    async def both():
        return await asyncio.gather(node.generate(**defaults(nodes[DEMUCS], audio=tone(1.0, rate=8000))),
                                    node.generate(**defaults(nodes[DEMUCS], audio=tone(3.0, rate=8000))))

    short, long = asyncio.run(both())
    drums = nodes[DEMUCS].RETURN_NAMES.index("drums")
    assert short[drums]["waveform"].shape[-1] == 8000
    assert long[drums]["waveform"].shape[-1] == 24000
