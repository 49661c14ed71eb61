"""ComfyUI's real web editor in headless Chromium (Debian's chromium, driven by Playwright; no browser download)."""

import json
import re
import time

from comfyui_harness import CHROMIUM, PACK_FOLDER

# What of the browser's console belongs to this pack: its URLs, its node types, its name.
PACK_MARKERS = (f"/extensions/{PACK_FOLDER}/", "FalAudio", "fal-audio", "fal_audio")
# The help panel first asks for a translation, docs/<NodeClass>/<locale>.md, then falls back to docs/<NodeClass>.md:
# the 404 of that first try is the frontend's design, not a fault of the pack.
LOCALE_PROBE = re.compile(rf"/extensions/{PACK_FOLDER}/docs/\w+/[a-z]{{2}}(?:-[A-Za-z]+)?\.md$")


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])


class Editor:
    """One browser tab on one ComfyUI, recording console errors, page errors and failed requests."""

    def __init__(self, browser, server, width=1600, height=1000):
        self.server = server
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.console, self.failed = [], []
        self.page.on("console", lambda m: self.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        self.page.on("pageerror", lambda e: self.console.append(("pageerror", f"{e}\n{getattr(e, 'stack', '')}", "")))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append((r.status, r.url)))
        self.page.on("requestfailed", lambda r: self.failed.append((0, r.url)))
        self.page.goto(server.url + "/")
        self.page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph "
                                    "&& Object.keys(LiteGraph.registered_node_types).length > 100", timeout=120_000)
        self.page.wait_for_timeout(1000)
        self.clear()

    def js(self, expression, arg=None):
        return self.page.evaluate(expression, arg)

    def clear(self):
        self.js("() => { app.graph.clear(); app.canvas.setDirty(true, true); }")

    def mark(self):
        return len(self.console), len(self.failed)

    def pack_problems(self, since=(0, 0)):
        """Console errors/warnings and failed requests since `since` that come from this pack."""
        console = [c for c in self.console[since[0]:] if c[0] in ("error", "pageerror", "warning")
                   and any(m in c[1] + c[2] for m in PACK_MARKERS)
                   and not ("404" in c[1] and LOCALE_PROBE.search(c[2].split("?")[0]))]
        failed = [f for f in self.failed[since[1]:] if any(m in f[1] for m in PACK_MARKERS)
                  and not (f[0] in (0, 404) and LOCALE_PROBE.search(f[1].split("?")[0]))]
        return console + failed

    def page_errors(self, since=(0, 0)):
        return [c for c in self.console[since[0]:] if c[0] == "pageerror"]

    def load(self, workflow: dict, name: str):
        """Open a UI-format workflow as the editor does when a user opens the file."""
        self.js("async ([wf, name]) => { await app.loadGraphData(wf, true, true, name); app.canvas.setDirty(true, true); }",
                [workflow, name])
        self.page.wait_for_timeout(300)

    def missing_nodes(self, workflow: dict, pack_types):
        """Node types of the workflow the editor does not know, nodes it loaded as placeholders, and pack nodes it
        marked as having errors. (A core LoadAudio naming a file the user has not uploaded yet is flagged by the
        editor too; that is the template asking for the user's file, not a broken node.)"""
        types = sorted({n["type"] for n in workflow["nodes"]})
        return self.js("""([types, pack]) => ({
            unknown: types.filter(t => !LiteGraph.registered_node_types[t]),
            broken: app.graph.nodes.filter(n => !LiteGraph.registered_node_types[n.type]
                                                || (n.has_errors && pack.includes(n.type))).map(n => n.type),
            loaded: app.graph.nodes.length})""", [types, list(pack_types)])

    def to_api_prompt(self) -> dict:
        """What the editor itself sends to POST /prompt for the open workflow (app.graphToPrompt)."""
        return self.js("async () => (await app.graphToPrompt()).output")

    def create_nodes(self, types, columns=5, spacing=(400, 40)):
        """Create each node type on a clear canvas, laid out in a grid; what the editor made of each."""
        return self.js("""([types, columns, spacing]) => {
            app.graph.clear();
            const made = {}; let x = 20, y = 20, row = 0, tallest = 0;
            types.forEach((type, i) => {
                const node = LiteGraph.createNode(type);
                if (!node) { made[type] = null; return; }
                app.graph.add(node);
                if (i % columns === 0 && i > 0) { y += tallest + spacing[1]; x = 20; tallest = 0; }
                node.pos = [x, y + 30]; x += Math.max(node.size[0], 340) + 40; tallest = Math.max(tallest, node.size[1] + 30);
                made[type] = {
                    title: node.title,
                    widgets: (node.widgets || []).map(w => w.name),
                    inputs: (node.inputs || []).map(i => i.name),
                    outputs: (node.outputs || []).map(o => o.name),
                    size: [node.size[0], node.size[1]],
                };
            });
            app.canvas.setDirty(true, true);
            return made;
        }""", [list(types), columns, list(spacing)])

    def fit_view(self):
        self.js("""() => {
            const nodes = app.graph.nodes; if (!nodes.length) return;
            let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
            for (const n of nodes) { x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 30);
                                     x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]); }
            const canvas = app.canvas.canvas, ds = app.canvas.ds;
            // Room for the editor's own bars: the sidebar on the left, the menu and Run button at the top.
            const [left, top, right, bottom] = [80, 110, 30, 30];
            const width = canvas.clientWidth - left - right, height = canvas.clientHeight - top - bottom;
            const scale = Math.min(width / (x1 - x0), height / (y1 - y0), 1.0);
            ds.scale = scale; ds.offset = [left / scale - x0, top / scale - y0];
            app.canvas.setDirty(true, true); app.canvas.draw(true, true);
        }""")
        self.page.wait_for_timeout(500)

    def screenshot(self, path):
        self.page.screenshot(path=str(path))
        return path

    def open_node_help(self, node_type):
        """Select a node of this type and open its help (Node Info) the way a user does; the panel's text."""
        self.js("""(type) => {
            app.graph.clear();
            const ds = app.canvas.ds; ds.scale = 1; ds.offset = [0, 0];
            const node = LiteGraph.createNode(type); node.pos = [420, 260]; app.graph.add(node);
            app.canvas.selectNode(node); app.canvas.setDirty(true, true);
        }""", node_type)
        self.page.wait_for_timeout(500)
        self.page.locator("[data-testid=info-button]").first.click()

    def wait_for_text(self, text, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.js("(t) => document.body.innerText.includes(t)", text):
                return True
            time.sleep(0.2)
        return False

    def close(self):
        self.page.close()


def widget_inputs(object_info: dict) -> list:
    """The inputs of a node (/object_info entry) that the editor draws as widgets, in order."""
    names = []
    for section in ("required", "optional"):
        for name, spec in object_info["input"].get(section, {}).items():
            kind = spec[0]
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                names.append(name)
    return names


def socket_inputs(object_info: dict) -> list:
    names = []
    for section in ("required", "optional"):
        for name, spec in object_info["input"].get(section, {}).items():
            kind = spec[0]
            if not (isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")):
                names.append(name)
    return names


def load_json(path):
    return json.loads(path.read_text(encoding="utf-8"))
