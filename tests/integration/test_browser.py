"""Issue 9: the pack in ComfyUI's real web editor (headless Chromium), with the frontend ComfyUI v0.21.0 pins
(1.43.18) and with the newest one (comfyui-frontend-package 1.58.1, first on PYTHONPATH for that start only).

Every pack node is created and drawn with its widgets, every example workflow loads with no missing node and no
console error from the pack, every node's help page shows in the node help panel, and (newest frontend) every
example runs from the Run button with no Comfy sign-in.

Screenshots go to a temp folder; with FAL_AUDIO_UPDATE_SCREENSHOTS=1 they also replace docs/screenshots/.
"""

import os
import re
import shutil
import time

import pytest

from comfyui_harness import PACK_FOLDER
from editor import load_json, socket_inputs, widget_inputs
from media import make_input_files
from support import PACK_DIR

pytestmark = pytest.mark.integration

EXAMPLES = sorted((PACK_DIR / "example_workflows").glob("*.json"))
SCREENSHOTS = PACK_DIR / "docs" / "screenshots"
FRONTENDS = ["pinned", "newest"]


@pytest.fixture(params=FRONTENDS)
def ui(request):
    """(editor, server) for one frontend."""
    editor = request.getfixturevalue("editor" if request.param == "pinned" else "editor_newest")
    editor.clear()
    return editor


def pack_types(server) -> dict:
    info = server.get("/object_info")
    return {name: spec for name, spec in info.items() if spec.get("python_module") == f"custom_nodes.{PACK_FOLDER}"}


def keep_screenshot(editor, tmp_path, name):
    path = editor.screenshot(tmp_path / name)
    assert path.stat().st_size > 20_000, "the screenshot is (nearly) blank"
    if os.environ.get("FAL_AUDIO_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
    return path


def test_the_editor_loads_the_pack_without_an_error(ui):
    """From the first request on: every file of the pack's WEB_DIRECTORY that the editor loads (web extensions,
    their imports) arrives and runs without a console error."""
    assert ui.pack_problems((0, 0)) == []
    scripts = [u for u in ui.server.get("/extensions") if u.startswith(f"/extensions/{PACK_FOLDER}/")]
    for script in scripts:
        assert ui.js("(url) => performance.getEntriesByType('resource').some(e => e.name.endsWith(url))", script), \
            f"the editor never loaded {script}"


def test_every_pack_node_is_created_and_drawn_with_its_widgets(ui, pack_nodes, tmp_path):
    types = pack_types(ui.server)
    assert sorted(types) == sorted(pack_nodes), "ComfyUI registered other nodes than the pack declares"
    since = ui.mark()
    ui.page.set_viewport_size({"width": 2200, "height": 1500})  # room for all of them at a readable zoom
    made = ui.create_nodes(sorted(types, key=lambda t: (types[t]["display_name"].startswith("fal"), t)))
    for name, spec in types.items():
        node = made[name]
        assert node is not None, f"the editor could not create {name}"
        assert node["title"] == spec["display_name"] == pack_nodes[name].DISPLAY_NAME
        assert set(widget_inputs(spec)) <= set(node["widgets"]), (name, node["widgets"])
        assert set(socket_inputs(spec)) <= set(node["inputs"]), (name, node["inputs"])
        assert node["outputs"] == list(spec["output_name"]), name
        assert node["size"][0] > 100 and node["size"][1] > 40, (name, node["size"])
    ui.fit_view()
    drawn = ui.js("() => { app.canvas.draw(true, true); "
                  "return app.canvas.computeVisibleNodes().map(n => n.type); }")
    assert sorted(drawn) == sorted(types), "not every node is on screen"
    # A Comfy partner ("API") node would be filed under Comfy's credit-billed nodes: none of ours is.
    flagged = ui.js("(types) => types.filter(t => (LiteGraph.registered_node_types[t].nodeData || {}).api_node)",
                    list(types))
    assert flagged == []
    assert ui.pack_problems(since) == []
    keep_screenshot(ui, tmp_path, "nodes.png" if ui.server.frontend is None else "nodes-frontend-1.58.png")
    ui.page.set_viewport_size({"width": 1600, "height": 1000})


def test_every_example_loads_with_no_missing_node_or_error(ui, pack_nodes):
    for path in EXAMPLES:
        workflow = load_json(path)
        since = ui.mark()
        ui.load(workflow, path.stem)
        state = ui.missing_nodes(workflow, pack_nodes)
        assert state["unknown"] == [] and state["broken"] == [], (path.name, state)
        assert state["loaded"] == len(workflow["nodes"]), (path.name, state)
        assert ui.pack_problems(since) == [], path.name
        assert not ui.js("() => /missing node|nodes are missing|not found/i.test("
                         "[...document.querySelectorAll('[role=dialog]')].map(d => d.innerText).join(' '))"), path.name


def first_words(page_text: str, count: int = 6) -> str:
    """The first words of the page's opening paragraph as the panel renders them (markdown marks removed)."""
    paragraphs = [p for p in page_text.split("\n\n")[1:] if p.strip() and not p.startswith(">")]
    plain = re.sub(r"[*`]", "", paragraphs[0])
    return " ".join(plain.split()[:count])


def shown_in_the_panel(pack_nodes) -> list:
    """The nodes whose help page the browser opens: every node that is not generated from the catalog, and one
    generated node of each category (the panel shows every page by the same route; each page's route is checked
    for every node over HTTP)."""
    generated = {name: cls for name, cls in pack_nodes.items() if cls.__module__.endswith(".nodes.catalog")}
    one_per_category = {cls.CATEGORY: name for name, cls in sorted(generated.items(), reverse=True)}
    return sorted(set(pack_nodes) - set(generated) | set(one_per_category.values()))


def test_every_node_help_page_is_served_and_shows_in_the_help_panel(ui, pack_nodes, tmp_path):
    from comfyui_harness import _NO_PROXY

    for name in sorted(pack_nodes):  # where the frontend asks for it (the panel's fallback: no locale)
        with _NO_PROXY.open(f"{ui.server.url}/extensions/{PACK_FOLDER}/docs/{name}.md", timeout=30) as response:
            assert response.status == 200
            assert response.read() == (PACK_DIR / "web" / "docs" / f"{name}.md").read_bytes(), name
    since = ui.mark()
    for name in shown_in_the_panel(pack_nodes):
        page = (PACK_DIR / "web" / "docs" / f"{name}.md").read_text(encoding="utf-8")
        expected = first_words(page)
        ui.open_node_help(name)
        if not ui.wait_for_text(expected, timeout=5):
            ui.page.locator("[data-testid=info-button]").first.click()  # the panel was open: it closed; again
        assert ui.wait_for_text(expected, timeout=10), f"{name}: the help panel does not show its page"
        served = [url for status, url in ui.failed[since[1]:] if url.endswith(f"/docs/{name}.md")]
        assert served == [], served
    showcase = "FalAudioAceStepInpaint"
    ui.open_node_help(showcase)
    if not ui.wait_for_text(first_words((PACK_DIR / "web" / "docs" / f"{showcase}.md").read_text()), timeout=5):
        ui.page.locator("[data-testid=info-button]").first.click()
    keep_screenshot(ui, tmp_path, "help.png" if ui.server.frontend is None else "help-frontend-1.58.png")
    assert ui.pack_problems(since) == []


def badges(ui, ids):
    """{node id: the badge text the pack's extension drew on that node's title} (None: nothing drawn yet)."""
    drawn = ui.js("(ids) => ids.map(id => app.graph.getNodeById(id).falPriceDrawn ?? null)", ids)
    return dict(zip(ids, drawn))


def wait_for_badges(ui, ids, expected=None, timeout=20.0):
    deadline = time.monotonic() + timeout
    drawn = {}
    while time.monotonic() < deadline:
        ui.js("() => app.canvas.draw(true, true)")
        drawn = badges(ui, ids)
        if all(drawn.values()) and (expected is None or drawn == expected):
            return drawn
        time.sleep(0.3)
    return drawn


def test_price_badges_show(ui, pack_nodes, tmp_path):
    """The price badge extension (web/js/) draws the estimate of the pack's route (POST /fal_audio/estimate) on
    every paid node's title, and asks again when a widget changes; free nodes get none."""
    scripts = sorted((PACK_DIR / "web" / "js").glob("*.js")) if (PACK_DIR / "web" / "js").is_dir() else []
    assert scripts, "no price-badge extension in web/js/"
    served = ui.server.get("/extensions")
    assert f"/extensions/{PACK_FOLDER}/js/fal_audio_price.js" in served, served
    since = ui.mark()
    paid = ["FalAudioLyria2", "FalAudioAceStep"]
    free = [name for name in ("FalAudioClient", "FalAudioWaveform") if name in pack_nodes]
    ui.page.set_viewport_size({"width": 1400, "height": 800})
    ui.create_nodes(paid + free, columns=4)
    ui.fit_view()
    ids = ui.js("(types) => types.map(t => String(app.graph.nodes.find(n => n.type === t).id))", paid + free)
    paid_ids, free_ids = ids[:len(paid)], ids[len(paid):]

    def route(changes=None):
        nodes = ui.js("""([ids, changes]) => ids.map(id => { const n = app.graph.getNodeById(id); const w = {};
            for (const x of n.widgets || []) if (['string','number','boolean'].includes(typeof x.value)) w[x.name] = x.value;
            return {id: String(id), type: n.type, widgets: {...w, ...(changes || {})}}; })""", [paid_ids, changes])
        answer = ui.server.post("/fal_audio/estimate", {"nodes": nodes})["estimates"]
        return {str(k): v["text"] for k, v in answer.items()}

    expected = route()
    assert sorted(expected) == sorted(paid_ids) and all("$" in t for t in expected.values()), expected
    drawn = wait_for_badges(ui, paid_ids, expected)
    assert drawn == expected, f"badges drawn {drawn}, route says {expected}"
    assert all(v is None for v in badges(ui, free_ids).values()), "a free node got a price badge"
    keep_screenshot(ui, tmp_path, "badges.png" if ui.server.frontend is None else "badges-frontend-1.58.png")
    # A longer song costs more: the badge follows the widget.
    ace = paid_ids[1]
    ui.js("(id) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'duration'); w.value = 240; "
          "app.canvas.setDirty(true, true); }", ace)
    longer = route()
    assert longer[ace] != expected[ace], (longer, expected)
    assert wait_for_badges(ui, paid_ids, longer)[ace] == longer[ace]
    ui.page.set_viewport_size({"width": 1600, "height": 1000})
    assert ui.pack_problems(since) == []


def test_every_example_runs_from_the_run_button_without_comfy_sign_in(editor_newest, server_newest, fal):
    """The newest frontend gates Comfy partner nodes behind a Comfy sign-in; ours bill the user's fal key and
    must run straight from the Run button."""
    ui = editor_newest
    object_info = server_newest.get("/object_info")
    for path in EXAMPLES:
        workflow = load_json(path)
        make_input_files(server_newest, workflow, object_info)
        ui.load(workflow, path.stem)
        ui.page.wait_for_timeout(500)
        assert ui.page.locator("[data-testid=partner-sign-in-to-run-button]").count() == 0, path.name
        before = set(server_newest.get("/history"))
        submissions = len(fal.submissions)
        ui.page.locator("[data-testid=queue-button]").first.click()
        deadline, new = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            new = [pid for pid in server_newest.get("/history") if pid not in before]
            if new:
                break
            time.sleep(0.2)
        assert new, f"{path.name}: Run queued nothing:\n{server_newest.log_tail()}"
        entry = server_newest.history(new[0])
        assert entry["status"]["status_str"] == "success", (path.name, entry["status"])
        assert len(fal.submissions) > submissions, f"{path.name}: nothing reached fal"
        assert not ui.js("() => /sign in/i.test([...document.querySelectorAll('[role=dialog]')]"
                         ".map(d => d.innerText).join(' '))"), f"{path.name}: a sign-in dialog opened"
