"""What a request keeps from fal's response: the files a node names, on disk under stable names.

A node says which files it keeps with a locator: response -> {output name: file URL}
(one file for most models, one per stem for stem separation, none for a text-only result
such as a transcription). The job runner downloads and keeps every one; these helpers
name them and read file URLs out of fal's response shapes.
"""

import re
from pathlib import Path
from typing import Callable, Dict

Locator = Callable[[dict], Dict[str, str]]
# The output name of the one file most models return. It keeps the name kept files had
# before several files per request existed (<endpoint>_<request id>.<ext>).
MAIN = "audio"


def file_url(response: dict, key: str) -> str:
    """The URL of the file in response[key] (a fal File object {"url": ...} or a bare URL)."""
    item = response.get(key) if isinstance(response, dict) else None
    url = item.get("url") if isinstance(item, dict) else item
    if not isinstance(url, str) or not url:
        raise ValueError(f"the response has no '{key}' file")
    return url


def single(key: str) -> Locator:
    """The locator of a model that returns one file, in response[key], kept as output MAIN."""
    return lambda response: {MAIN: file_url(response, key)}


def file_name(endpoint: str, request_id: str, name: str, url: str) -> str:
    """<endpoint>_<request id>[_<name>].<ext>: the main file without its name, others with it."""
    suffix = Path(url.split("?")[0]).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = ".bin"
    label = "" if name == MAIN else "_" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:40]
    # A plain name whatever fal sent as request id: no folder part, never outside the output folder.
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{endpoint.replace('/', '_')}_{request_id}")[:200].lstrip(".")
    return f"{stem}{label}{suffix}"


# Extensions of audio files the pack decodes (by path, without the query).
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mka")


def _is_audio(url: str, content_type) -> bool:
    if isinstance(content_type, str) and content_type.split(";")[0].strip().lower().startswith("audio/"):
        return True
    if url.startswith("data:"):
        return url[5:].split(",")[0].split(";")[0].lower().startswith("audio/")
    return url.split("?")[0].split("#")[0].lower().endswith(AUDIO_EXTENSIONS)


MAX_FILES = 16  # the most audio files audio_files() finds in one response (a hostile answer cannot ask for more)


def audio_files(response, path: str = "", found: list = None) -> list:
    """[(where, url)] of the audio files in a response of any shape, in the order fal wrote them (at most
    MAX_FILES): File objects ({"url", "content_type", ...}) or bare URLs, recognised by their content type or
    extension. `where` names each like response.audio, stems.vocals or files[0]."""
    found = [] if found is None else found
    if len(found) >= MAX_FILES:
        return found
    if isinstance(response, dict):
        url = response.get("url")
        if isinstance(url, str) and url.startswith(("https://", "http://", "data:")) and \
                _is_audio(url, response.get("content_type")):
            found.append((path or "response", url))
            return found
        for key, value in response.items():
            audio_files(value, f"{path}.{key}" if path else str(key), found)
    elif isinstance(response, list):
        for index, value in enumerate(response):
            audio_files(value, f"{path}[{index}]", found)
    elif isinstance(response, str) and response.startswith(("https://", "http://", "data:")) and \
            _is_audio(response, None):
        found.append((path or "response", response))
    return found[:MAX_FILES]


def first_audio_file(response):
    """(where, url) of the first audio file in a response of any shape (audio_files()), None when it holds none."""
    found = audio_files(response)
    return found[0] if found else None
