"""media: sound, pictures and files, with no notion of fal or money.

AUDIO values to and from files (audio: PyAV; wav: plain WAV with numpy; wavstream: a WAV decoded while it
downloads; limits: the decode limits every decoder keeps), chaining a fal result into another node by fal's own
URL (reuse: origins and content hashes), IMAGE batches as video and PNG (video, png), waveform and spectrogram
pictures (images), SRT subtitles (subtitles), data: URIs (data_uri), and fetching a URL for Load Audio from URL
(fetch) within the network rules (netguard).

May import: core. Inside media, audio builds on wav, limits and reuse (reuse takes audio's encoder from its
caller, so the three do not import each other in a circle).
"""
