"""A real ComfyUI for the integration tests: set up from ../shared/comfyui, started headless on 127.0.0.1 with a
private base directory, this pack linked into its custom_nodes, and the fal emulator's environment.

Nothing here fakes ComfyUI: prompts go through POST /prompt, results come from /history, progress text from the
websocket, Cancel is POST /interrupt.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from support import PACK_DIR

PACK_FOLDER = "fal-audio"  # the name users clone it under: ComfyUI serves WEB_DIRECTORY at /extensions/fal-audio/
SHARED = Path(os.environ.get("FAL_AUDIO_SHARED_COMFYUI") or PACK_DIR.parent / "shared" / "comfyui")
SHIMS = SHARED / "shims" / "torchvision_torchaudio"
NEWEST_FRONTEND = "comfyui-frontend-package==1.58.1"
CHROMIUM = Path("/usr/bin/chromium")
READY_TIMEOUT = 180.0

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def missing_prerequisite():
    """Why the integration tests cannot run here, or None."""
    if not (SHARED / "setup.sh").is_file():
        return f"no ComfyUI to test against: {SHARED}/setup.sh is missing (set FAL_AUDIO_SHARED_COMFYUI)"
    if sys.prefix == sys.base_prefix:
        return ("not in a virtual environment: ComfyUI's requirements are installed into the running Python, so "
                "run the README's test command (it makes .venv)")
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian package chromium; .ci/run installs it)"
    return None


def scratch_dir() -> Path:
    """Kept between runs inside the running virtual environment (git-ignored .venv), so set-up is done once."""
    return Path(sys.prefix) / "fal-audio-integration"


def setup_comfyui() -> Path:
    """Unpack ComfyUI into the scratch dir and install its requirements into this Python (setup.sh, idempotent)."""
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SHARED / "setup.sh"), str(scratch_dir() / "comfyui")], env=env,
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"setup.sh failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    main = Path(result.stdout.strip().splitlines()[-1]) / "main.py"
    assert main.is_file(), result.stdout
    return main


def newest_frontend() -> Path:
    """comfyui-frontend-package 1.58.1 in a folder of its own (never installed into the environment)."""
    target = scratch_dir() / "frontend-1.58.1"
    if not (target / "comfyui_frontend_package" / "static" / "index.html").is_file():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        NEWEST_FRONTEND], check=True, timeout=1800)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyUI:
    """One ComfyUI server process with its own base directory (custom_nodes, input, output, user, database)."""

    def __init__(self, main: Path, base: Path, fal_env: dict, frontend: Path = None):
        self.main, self.base, self.frontend = main, base, frontend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log_path = base / "comfyui.log"
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = base / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(PACK_DIR, target_is_directory=True)
        for folder in ("input", "output", "temp", "user/default"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        # A returning user (no first-run template browser over the canvas); screenshots without the minimap and
        # with text drawn at every zoom level.
        settings = base / "user" / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                                            "LiteGraph.Canvas.MinFontSizeForLOD": 1,
                                            "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.1}))
        pythonpath = [str(SHIMS)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        if frontend is not None:
            pythonpath.insert(0, str(frontend))  # first on PYTHONPATH for this start only
        self.env = {name: value for name, value in os.environ.items()
                    if not name.startswith("FAL_") and name.lower() not in ("https_proxy", "http_proxy", "no_proxy",
                                                                           "all_proxy")}
        self.env.update(fal_env)
        self.env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        self.env["PYTHONUNBUFFERED"] = "1"

    # -- process --------------------------------------------------------------------------------------------------

    def start(self) -> "ComfyUI":
        log = open(self.log_path, "a", encoding="utf-8")
        log.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n")
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, str(self.main), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(self.base), "--database-url", f"sqlite:///{self.base / 'comfyui.db'}",
             "--disable-auto-launch"],
            cwd=str(self.base), env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.get("/system_stats") is not None:
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer /system_stats within {READY_TIMEOUT:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- HTTP -----------------------------------------------------------------------------------------------------

    def get(self, path: str):
        with _NO_PROXY.open(self.url + path, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def post(self, path: str, payload=None):
        data = json.dumps(payload if payload is not None else {}).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(request, timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None
        return json.loads(body) if body else None

    def queue(self, prompt: dict, client_id: str) -> str:
        answer = self.post("/prompt", {"prompt": prompt, "client_id": client_id})
        assert not answer.get("node_errors"), answer
        return answer["prompt_id"]

    def history(self, prompt_id: str, timeout: float = 180.0) -> dict:
        """The prompt's /history entry once it has finished (completed, failed or interrupted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("status_str") in ("success", "error")):
                return entry
            time.sleep(0.2)
        raise AssertionError(f"prompt {prompt_id} did not finish within {timeout:g} s:\n{self.log_tail()}")

    def output_file(self, item: dict) -> Path:
        """The file a /history output entry ({filename, subfolder, type}) names."""
        folder = {"output": "output", "temp": "temp", "input": "input"}[item.get("type", "output")]
        return self.base / folder / item.get("subfolder", "") / item["filename"]


PROGRESS_TEXT = "progress_text"  # how a binary progress text (type 3) is named among the decoded messages


def decode_message(opcode_text: bool, data) -> dict:
    """One websocket message as a dict: JSON text as sent, a binary progress text (type 3: node id length,
    node id, text) as {"type": "progress_text", "data": {"node": ..., "text": ...}}; other binaries
    (previews) as {"type": "binary", "data": {"kind": n}}."""
    if opcode_text:
        return json.loads(data)
    (kind,) = struct.unpack(">I", data[:4])
    if kind == Events.TEXT:
        (length,) = struct.unpack(">I", data[4:8])
        node = data[8:8 + length].decode()
        return {"type": PROGRESS_TEXT, "data": {"node": node, "text": data[8 + length:].decode("utf-8", "replace")}}
    return {"type": "binary", "data": {"kind": kind}}


class Events:
    """The websocket /ws of one client id: JSON events and progress text (binary type 3), collected in a
    thread; `timeline` keeps every message, decoded, with the time.monotonic() of its receipt."""

    TEXT = 3

    def __init__(self, server: ComfyUI):
        import websocket  # websocket-client

        self.client_id = uuid.uuid4().hex
        self.messages, self.texts, self.timeline = [], [], []
        self._lock = threading.Lock()
        self._ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={self.client_id}",
                                               timeout=30, http_no_proxy=["127.0.0.1"])
        self._ws.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        import websocket

        while not self._stop.is_set():
            try:
                opcode, data = self._ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # closed
                return
            received = time.monotonic()
            text = opcode == websocket.ABNF.OPCODE_TEXT
            if not text and not (opcode == websocket.ABNF.OPCODE_BINARY and len(data) >= 8):
                continue
            message = decode_message(text, data)
            with self._lock:
                self.timeline.append((received, message))
                if message["type"] == PROGRESS_TEXT:
                    self.texts.append((message["data"]["node"], message["data"]["text"]))
                elif text:
                    self.messages.append(message)

    def snapshot(self) -> list:
        """Every message so far, with its receipt time: [(time.monotonic(), message)]."""
        with self._lock:
            return list(self.timeline)

    def texts_of(self, node_id: str) -> list:
        with self._lock:
            return [text for node, text in self.texts if node == str(node_id)]

    def of_prompt(self, prompt_id: str, kind: str = None) -> list:
        with self._lock:
            return [m for m in self.messages if (m.get("data") or {}).get("prompt_id") == prompt_id
                    and (kind is None or m.get("type") == kind)]

    def close(self):
        self._stop.set()
        try:
            self._ws.close()
        except Exception:
            pass
        self._thread.join(timeout=5)
