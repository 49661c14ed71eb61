"""Zero-upload chaining: a fal result that reaches another fal node unchanged is sent by
fal's own URL of the original file, with no encode and no upload.

Every AUDIO decoded from a result file on fal's own file hosts (media.netguard.fal_file;
a file from anywhere else is uploaded when passed on, as any clip) carries where it came from
under one extra key, `fal_origin`: a list with one entry per batch item (None where unknown),
each plain data (str/int/None, so ComfyUI's caches, pickling and JSON all take it): fal's URL
of the file, the kept copy on disk, the file's content hash, and the item's shape, rate and a
content hash of its float32 samples. The URL is there only while the kept file is, hash for
hash, the file the pack downloaded from fal in this process; otherwise (a kept file edited
on disk, or kept by an earlier process) it is None and the kept file itself is uploaded.
A node that changes the clip makes a new value; a node that hands on the same dict (or a
copy of it) keeps the key, and the samples are hashed again before the URL is used, so a
clip edited in place, trimmed, resampled or padded is uploaded as before. Any other node
simply ignores the key.

A URL is used as is while fal served it within TRUST_SECONDS (it was downloaded, or
probed, in this process); otherwise one ranged GET of a single byte asks whether fal still
serves it. If not, the kept original file is uploaded instead (the journal's upload table
then reuses that upload for 12 hours). The request's journal identity names the input by
the original file's content hash either way, so it is the same whether the file went by
URL or by upload.
"""

import time
from pathlib import Path
from typing import List, Optional

from .netguard import fal_file

KEY = "fal_origin"
# fal serves a file it just returned; a URL not seen served for this long is probed first.
TRUST_SECONDS = 3600.0
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
                 ".opus": "audio/opus", ".m4a": "audio/mp4", ".aac": "audio/aac", ".webm": "audio/webm"}

_served: dict = {}  # URL -> time.monotonic() it was last seen served
# Kept file path -> (fal's URL it was downloaded from, its content hash at its first decode; None before).
_returned: dict = {}


def content_hash(data) -> str:
    """The content hash that names inputs and results (journal identities, upload reuse, chaining).

    XXH3-128: not cryptographic, and need not be (it names the user's own clips; nobody
    forges collisions against them), with 128 bits against chance collisions, and about
    10 GB/s: a 60 s stereo clip hashes in ~1 ms instead of ~30 ms with sha256/blake2b.
    """
    import xxhash

    return "xxh3-128:" + xxhash.xxh3_128_hexdigest(data)


def running_hash():
    """The same hash taken block by block: update(bytes) each block, then hash_name() of it."""
    import xxhash

    return xxhash.xxh3_128()


def hash_name(digest) -> str:
    return "xxh3-128:" + digest.hexdigest()


def file_hash(path: Path) -> str:
    """Content hash of a file, read in 1 MiB blocks (a 10-minute WAV is ~100 MB: never held whole)."""
    digest = running_hash()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return hash_name(digest)


def samples_hash(waveform) -> str:
    """Content hash of a [C, T] float32 CPU waveform (~1 ms per 10 MB)."""
    return content_hash(waveform.contiguous().numpy().data)


def served(url: str) -> None:
    """fal just served this URL (the result file was downloaded from it)."""
    _served[url] = time.monotonic()


def returned(path: Path, url: str) -> None:
    """The pack just downloaded `url` into the kept file at `path`."""
    if fal_file(url):
        _returned[str(path)] = (url, None)


def decode(decode_file, path: Path, url: Optional[str], known_hash: Optional[str] = None) -> dict:
    """decode_file(path), marked with its origin when it came from fal's own file hosts (runs in a
    worker thread). known_hash: the file's content hash if already known (hashed while it downloaded)."""
    audio = decode_file(path)
    if url and fal_file(url) and audio["waveform"].shape[0] == 1:
        digest = known_hash or file_hash(Path(path))
        record = _returned.get(str(path))
        if record == (url, None):  # its first decode, right after the download
            record = _returned[str(path)] = (url, digest)
        waveform = audio["waveform"][0]
        audio[KEY] = [{"url": url if record == (url, digest) else None, "path": str(path), "file_hash": digest,
                       "channels": int(waveform.shape[0]), "frames": int(waveform.shape[1]),
                       "sample_rate": int(audio["sample_rate"]), "samples_hash": samples_hash(waveform)}]
    return audio


def _entries(audio) -> list:
    entries = audio.get(KEY) if isinstance(audio, dict) else None
    return entries if isinstance(entries, list) else []


def carry(audio: dict, clips: List[dict]) -> List[dict]:
    """Hand each checked clip of `audio` (audio.clips) the origin of its batch item."""
    entries = _entries(audio)
    if len(entries) == len(clips):
        for clip, entry in zip(clips, entries):
            if isinstance(entry, dict):
                clip[KEY] = [entry]
    return clips


def stacked(items: List[dict], out: dict) -> dict:
    """The origins of the items of a stacked batch, for items the stacking left unchanged."""
    entries = []
    for index, item in enumerate(items):
        mine = _entries(item)
        same = (len(mine) == 1 and item["sample_rate"] == out["sample_rate"]
                and tuple(item["waveform"].shape[1:]) == tuple(out["waveform"].shape[1:]))
        entries.append(mine[0] if same else None)
    if any(entries):
        out[KEY] = entries
    return out


class Origin:
    """A clip that is, sample for sample, a fal result: where fal serves the original file."""

    def __init__(self, entry: dict, clip: dict):
        self.url = entry["url"]
        self.path = Path(entry["path"])
        self.file_hash = entry["file_hash"]
        self.content_type = CONTENT_TYPES.get(self.path.suffix.lower(), "application/octet-stream")
        self.file_name = self.path.name
        self._clip = clip

    def original(self, encode_wav):
        """What to upload if fal no longer serves the URL: the kept original file (if it is still
        the same file), else the clip as 16-bit WAV like any other clip (`encode_wav`, audio.py's
        encoder: audio.py builds on this module): (bytes, type, name)."""
        try:
            data = self.path.read_bytes()
            if content_hash(data) == self.file_hash:
                return data, self.content_type, self.file_name
        except OSError:
            pass
        return encode_wav(self._clip), "audio/wav", self.path.with_suffix(".wav").name


def origin(clip: dict) -> Optional[Origin]:
    """The origin of a checked [1, C, T] clip, if its samples are still exactly the fal result's."""
    entries = _entries(clip)
    if len(entries) != 1 or not isinstance(entries[0], dict):
        return None
    entry = entries[0]
    waveform = clip["waveform"][0]
    try:
        if (int(clip["sample_rate"]) != entry["sample_rate"] or tuple(waveform.shape) != (
                entry["channels"], entry["frames"]) or samples_hash(waveform) != entry["samples_hash"]):
            return None
        return Origin(entry, clip)
    except (KeyError, TypeError, ValueError):
        return None


async def still_served(found: Origin, probe) -> Optional[str]:
    """found.url if fal still serves it (seen within TRUST_SECONDS, else `probe(url)` says so), else None
    (also when the clip has no URL: its kept file is not known to be the file fal returned)."""
    if found.url is None:
        return None
    seen = _served.get(found.url)
    if seen is not None and time.monotonic() - seen < TRUST_SECONDS:
        return found.url
    if await probe(found.url):
        served(found.url)
        return found.url
    return None
