"""Issue 9: installing the pack (requirements, registry metadata, minimum ComfyUI) and the test command."""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import types

import pytest

from support import PACK_DIR, pack_module

README = (PACK_DIR / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((PACK_DIR / "pyproject.toml").read_text(encoding="utf-8"))
IN_CI = os.environ.get("CI") == "true"


def readme_commands():
    """The set-up commands of the README's first lines: `...` after 'Install into ComfyUI:' / 'Run the tests:'."""
    head = README.split("\n## ", 1)[0]
    return dict(re.findall(r"^(Install into ComfyUI|Run the tests): `([^`]+)`$", head, re.MULTILINE))


def test_readme_starts_with_exactly_two_set_up_commands():
    head = README.split("\n## ", 1)[0]
    assert len(re.findall(r"`[^`]*(?:pip|pytest|git clone)[^`]*`", head)) == 2
    assert set(readme_commands()) == {"Install into ComfyUI", "Run the tests"}


def test_test_command_uses_a_project_local_venv_never_the_current_python():
    command = readme_commands()["Run the tests"]
    steps = [step.strip() for step in command.split("&&")]
    assert steps[0] == "python -m venv .venv"
    # Everything after creating the venv runs the venv's Python: torch can never land in ComfyUI's environment.
    assert all(step.startswith(".venv/bin/python -m ") for step in steps[1:]), steps
    assert any("torch==2.13.0" in step for step in steps) and steps[-1].startswith(".venv/bin/python -m pytest")
    assert ".venv/" in (PACK_DIR / ".gitignore").read_text().splitlines()


def test_ci_runs_exactly_the_readme_test_command():
    lines = (PACK_DIR / ".ci" / "run").read_text().strip().splitlines()
    assert lines[-1] == readme_commands()["Run the tests"]


DOCS = sorted((PACK_DIR / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_a_short_page_for_users_without_history():
    assert len(README.splitlines()) <= 220
    # Hex words of 7+ characters are commit hashes, except the short fal request ids of the progress text examples.
    hexes = re.findall(r"(?<!request )\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", README)
    assert not hexes, f"commit hashes in the README: {hexes}"
    assert not re.findall(r"(?i)\bissues? #?\d+|(?<![\w/&])#\d+\b", README), "an issue number"


@pytest.mark.parametrize("page", [PACK_DIR / "README.md", PACK_DIR / "CHANGELOG.md", *DOCS], ids=lambda p: p.name)
def test_every_local_link_and_picture_of_the_docs_exists(page):
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


def test_the_readme_links_every_docs_page():
    linked = {t for t in LINK.findall(README) if t.startswith("docs/") and t.endswith(".md")}
    assert linked == {f"docs/{page.name}" for page in DOCS}


def test_docs_price_table_is_the_packs_table():
    table = json.loads((PACK_DIR / "data" / "prices.json").read_text(encoding="utf-8"))
    costs = (PACK_DIR / "docs" / "costs.md").read_text(encoding="utf-8")
    assert f"checked on {table['checked']}" in costs
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", costs, re.MULTILINE)
    assert len(rows) >= 20
    for endpoint, price, unit, confidence in rows:
        row = table["prices"][endpoint]
        assert price == ("–" if row["unit_price"] is None else f"${row['unit_price']:g}"), endpoint
        assert unit == (row["unit"] or "–") + (" (each started unit)" if row.get("round_up") else ""), endpoint
        assert confidence == row["confidence"], endpoint


def test_docs_node_list_names_real_nodes_and_their_endpoints():
    from support import curated, load_pack

    pack = load_pack()
    nodes = {pack.NODE_DISPLAY_NAME_MAPPINGS[name]: cls for name, cls in pack.NODE_CLASS_MAPPINGS.items()}
    text = (PACK_DIR / "docs" / "nodes.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([^|`]+?) \| (–|`[^`/]+/[^`]+`|any `[^`]+`) \| .+ \|$", text, re.MULTILINE)
    listed = {title for title, _ in rows}
    missing = [cls.DISPLAY_NAME for name, cls in pack.NODE_CLASS_MAPPINGS.items() if name in curated(
        pack.NODE_CLASS_MAPPINGS) and cls.DISPLAY_NAME.removesuffix(" (fal)") not in listed]
    assert missing == [], f"docs/nodes.md lists every hand-tuned node; not: {missing}"
    for title, endpoint in rows:
        names = (title, f"{title} (fal)", f"{title} (fal Audio)")
        matches = [cls for display, cls in nodes.items() if display in names]
        assert len(matches) == 1, f"docs/nodes.md names {title!r}, which is no node"
        declared = getattr(matches[0], "ENDPOINT", None)
        if endpoint.startswith("`"):
            assert declared == endpoint.strip("`"), title
        else:
            assert not declared, title


def test_requirements_list_what_the_pack_imports_and_never_torch():
    requirements = [line.strip() for line in (PACK_DIR / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    names = {re.split(r"[<>=!~ ]", line, 1)[0].lower() for line in requirements}
    assert {"fal-client", "httpx", "av", "numpy", "xxhash"} <= names
    assert not names & {"torch", "torchaudio", "torchvision"}
    assert requirements == PYPROJECT["project"]["dependencies"]


def test_registry_metadata_names_a_real_icon_and_the_minimum_comfyui():
    comfy = pack_module("core.comfy")
    tool = PYPROJECT["tool"]["comfy"]
    minimum = ".".join(map(str, comfy.MIN_COMFYUI))
    assert tool["requires-comfyui"] == f">={minimum}"
    repository = PYPROJECT["project"]["urls"]["Repository"]
    prefix = repository.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    assert tool["Icon"].startswith(prefix), "Icon must point at a file of this repository"
    icon = PACK_DIR / tool["Icon"][len(prefix):]
    data = icon.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == height and 64 <= width <= 400, (width, height)
    assert len(data) < 50_000


def test_comfy_node_validate_passes():
    if shutil.which("comfy") is None and not _has_module("comfy_cli"):
        if IN_CI:
            pytest.fail("comfy-cli is not installed (requirements-test.txt)")
        pytest.skip("comfy-cli is not installed (requirements-test.txt)")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "comfy_cli", "--skip-prompt", "--no-enable-telemetry", "node",
                             "validate"], cwd=PACK_DIR, capture_output=True, text=True, timeout=300, env=env,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "All validation checks passed" in output and "Warning" not in output, output


def _has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("version, problem", [
    ("0.21.0", False), ("0.3.45", False), ("v0.3.58", False), ("1.0", False),
    ("0.3.44", True), ("0.3.30", True), (None, True),
])
def test_version_problem_names_the_minimum_and_the_version_found(monkeypatch, version, problem):
    comfy = pack_module("core.comfy")
    monkeypatch.setitem(sys.modules, "folder_paths", types.ModuleType("folder_paths"))
    if version is None:
        monkeypatch.setitem(sys.modules, "comfyui_version", None)  # import fails: ComfyUI before 0.3.11
    else:
        module = types.ModuleType("comfyui_version")
        module.__version__ = version
        monkeypatch.setitem(sys.modules, "comfyui_version", module)
    message = comfy.version_problem()
    if not problem:
        assert message is None
    else:
        assert message.startswith("fal Audio needs ComfyUI 0.3.45 or newer")
        assert f"this is ComfyUI {version or 'older than 0.3.11'}" in message


def test_version_check_is_silent_outside_comfyui(monkeypatch):
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    assert pack_module("core.comfy").version_problem() is None


STARTUP = """
import importlib.util, logging, sys, types
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
sys.modules["folder_paths"] = types.ModuleType("folder_paths")
version = types.ModuleType("comfyui_version"); version.__version__ = sys.argv[1]; sys.modules["comfyui_version"] = version
spec = importlib.util.spec_from_file_location("fal-audio", sys.argv[2])
module = importlib.util.module_from_spec(spec); sys.modules["fal-audio"] = module; spec.loader.exec_module(module)
print("nodes", len(module.NODE_CLASS_MAPPINGS))
"""


@pytest.mark.parametrize("version", ["0.3.40", "0.21.0"])
def test_an_old_comfyui_gets_one_clear_line_at_start_up(version):
    result = subprocess.run([sys.executable, "-c", STARTUP, version, str(PACK_DIR / "__init__.py")],
                            capture_output=True, text=True, check=True, cwd="/")
    lines = result.stdout.splitlines()
    warnings = [line for line in lines if "fal Audio needs ComfyUI" in line]
    if version == "0.21.0":
        assert warnings == []
    else:
        assert warnings == ["WARNING fal_audio.startup: fal Audio needs ComfyUI 0.3.45 or newer (async nodes); this "
                            "is ComfyUI 0.3.40. Its nodes will fail to run: update ComfyUI (ComfyUI-Manager: Update "
                            "ComfyUI; git: git pull; portable: update\\update_comfyui.bat) and restart."]
    assert lines[-1].startswith("nodes ") and int(lines[-1].split()[1]) > 10  # the nodes still register
