// fal Audio panel: a "fal" tab in the editor's sidebar with what is spent (today against the daily limit, the last
// 30 days, the last 7 days per model and where prices come from, per worker when several share a database), every request this ComfyUI has on fal now (with
// a Cancel button each) and the recent kept results (copy the id, play, fetch again). The server pushes changes
// over ComfyUI's websocket ("fal_audio.panel"); the page only asks again every REFRESH_MS while the tab is open.
// Everything that comes from data is inserted as text (textContent), never as HTML.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const BASE = "/fal_audio/panel";
const REFRESH_MS = 15000;
const STYLE = `
.fal-panel { padding: 8px 10px; font-size: 12px; line-height: 1.4; overflow-y: auto; height: 100%; box-sizing: border-box; }
.fal-panel h3 { font-size: 13px; margin: 12px 0 6px; }
.fal-panel .fal-muted { opacity: 0.7; }
.fal-panel .fal-bar { height: 10px; border-radius: 5px; background: rgba(127,127,127,0.25); overflow: hidden; margin: 4px 0; }
.fal-panel .fal-bar > div { height: 100%; background: #3b82f6; }
.fal-panel .fal-bar.fal-over > div { background: #ef4444; }
.fal-panel .fal-chart { display: flex; align-items: flex-end; gap: 1px; height: 48px; margin: 4px 0; }
.fal-panel .fal-chart > div { flex: 1; background: #3b82f6; min-height: 1px; opacity: 0.8; }
.fal-panel .fal-row { border-top: 1px solid rgba(127,127,127,0.25); padding: 4px 0; }
.fal-panel .fal-row button { font-size: 11px; margin: 2px 4px 0 0; padding: 1px 8px; cursor: pointer; border-radius: 4px;
  border: 1px solid rgba(127,127,127,0.5); background: var(--comfy-input-bg, #222); color: var(--input-text, #ddd); }
.fal-panel .fal-row button:disabled { opacity: 0.5; cursor: default; }
.fal-panel .fal-id { font-family: monospace; font-size: 11px; word-break: break-all; }
.fal-panel audio { width: 100%; height: 28px; margin-top: 4px; }
.fal-panel .fal-message { color: #f59e0b; }
`;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(label, onClick) {
  const node = el("button", "fal-button", label);
  node.addEventListener("click", onClick);
  return node;
}

async function getJSON(path, options) {
  const response = await api.fetchApi(BASE + path, options);
  let body = {};
  try {
    body = await response.json();
  } catch (error) {
    body = { error: `HTTP ${response.status}` };
  }
  return { ok: response.ok, body };
}

function post(path, requestId) {
  return getJSON(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ request_id: requestId }),
  });
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  return value >= 60 ? `${Math.floor(value / 60)} min ${Math.round(value % 60)} s` : `${Math.round(value)} s`;
}

// The clipboard API exists only on secure pages (localhost, https): elsewhere the id is selected for Ctrl+C.
function copyText(text, node) {
  const select = () => {
    const range = document.createRange();
    range.selectNodeContents(node);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
  };
  if (navigator.clipboard?.writeText) navigator.clipboard.writeText(text).catch(select);
  else select();
}

function nodeTitle(nodeId) {
  if (!nodeId) return "";
  const node = app.graph?.getNodeById?.(Number(nodeId)) ?? app.graph?.getNodeById?.(nodeId);
  return node?.title ? `${node.title} (#${nodeId})` : `node #${nodeId}`;
}

class Panel {
  constructor(root) {
    this.root = root;
    this.spendBox = el("div", "fal-spend");
    this.flightBox = el("div", "fal-inflight");
    this.recentBox = el("div", "fal-recent");
    this.message = el("div", "fal-message");
    root.append(
      el("h3", "", "Spend"), this.spendBox,
      el("h3", "", "In flight"), this.flightBox,
      el("h3", "", "Recent results"), this.message, this.recentBox,
    );
    this.requests = [];
    this.receivedAt = Date.now();
    this.players = new Map(); // request id -> its <audio> element, kept across redraws
  }

  async refresh() {
    const [spend, flying, recent] = await Promise.all([getJSON("/spend"), getJSON("/inflight"), getJSON("/recent")]);
    if (spend.ok) this.drawSpend(spend.body);
    if (flying.ok) this.setRequests(flying.body.requests);
    if (recent.ok) this.drawRecent(recent.body.results);
  }

  pushed(detail) {
    if (!detail) return;
    const before = this.requests.length;
    if (detail.spend) this.drawSpend(detail.spend);
    if (Array.isArray(detail.requests)) this.setRequests(detail.requests);
    if (this.requests.length < before) getJSON("/recent").then((r) => r.ok && this.drawRecent(r.body.results));
  }

  drawSpend(spend) {
    const box = this.spendBox;
    box.replaceChildren();
    const today = spend.today;
    const limit = spend.limit;
    const line = el("div", "fal-today");
    line.append(el("b", "", `Today ${today.text}`));
    line.append(document.createTextNode(limit.usd ? ` of ${limit.text} · ${limit.left_text} left` : " · no daily limit"));
    box.append(line);
    if (limit.usd) {
      const bar = el("div", "fal-bar" + (today.usd >= limit.usd ? " fal-over" : ""));
      const fill = el("div");
      fill.style.width = `${Math.min(100, (100 * today.usd) / limit.usd)}%`;
      bar.append(fill);
      bar.title = `${today.text} of ${limit.text} (limit: ${limit.source})`;
      box.append(bar);
    }
    const notes = [];
    if (today.in_flight) notes.push(`${today.in_flight} not finished yet, counted at the estimate`);
    if (today.possibly_billed) notes.push(`${today.possibly_billed} possibly billed`);
    if (today.unknown_price) notes.push(`${today.unknown_price} at an unknown price, not counted`);
    if (notes.length) box.append(el("div", "fal-muted", notes.join(" · ")));
    const chart = el("div", "fal-chart");
    const top = Math.max(...spend.days.map((d) => d.usd), 0.000001);
    for (const day of spend.days) {
      const barDay = el("div");
      barDay.style.height = `${(100 * day.usd) / top}%`;
      barDay.title = `${day.day}: ${day.text}`;
      chart.append(barDay);
    }
    box.append(el("div", "fal-muted", "Last 30 days"), chart);
    box.append(el("div", "fal-muted", spend.models.length ? "Last 7 days per model" : "Nothing spent in the last 7 days"));
    for (const model of spend.models) {
      const row = el("div", "fal-row");
      row.append(el("div", "", `${model.endpoint}: ${model.text} in ${model.paid} paid` +
        (model.free ? `, ${model.free} free` : "")));
      const price = model.price;
      const fresh = price.fetched ? ` at ${price.fetched.replace("T", " ")}` : "";
      row.append(el("div", "fal-muted", `${price.text} · ${price.source}${fresh}`));
      box.append(row);
    }
    const workers = spend.workers || []; // several workers sharing one database: the fal Spend node's lines
    if (workers.length) box.append(el("div", "fal-muted", "Last 7 days per worker"));
    for (const worker of workers) {
      box.append(el("div", "fal-row fal-worker",
        `${worker.worker}: ${worker.text} in ${worker.paid} paid, today ${worker.today_text}`));
    }
  }

  setRequests(requests) {
    this.requests = requests || [];
    this.receivedAt = Date.now();
    this.drawRequests();
  }

  drawRequests() {
    const box = this.flightBox;
    box.replaceChildren();
    if (!this.requests.length) {
      box.append(el("div", "fal-muted", "No request on fal right now."));
      return;
    }
    this.ticking = [];
    for (const request of this.requests) {
      const row = el("div", "fal-row fal-request");
      const take = request.take ? ` · ${request.take}` : "";
      row.append(el("div", "", `${request.endpoint}${take}`));
      const line = el("div", "fal-muted");
      this.ticking.push([line, request]);
      row.append(line);
      if (request.request_id) {
        row.append(el("div", "fal-id", request.request_id));
        const cancel = button("Cancel", async () => {
          cancel.disabled = true;
          const answer = await post("/cancel", request.request_id);
          if (!answer.ok) {
            this.message.textContent = answer.body.error || "cancel failed";
            cancel.disabled = false;
          }
        });
        cancel.dataset.requestId = request.request_id;
        row.append(cancel);
      }
      box.append(row);
    }
    this.tick();
  }

  tick() {
    const extra = (Date.now() - this.receivedAt) / 1000;
    for (const [line, request] of this.ticking || []) {
      line.textContent = `${nodeTitle(request.node_id)} · ${request.state} · ${seconds(request.elapsed_s + extra)}` +
        ` · est. ${request.estimate_text}`;
    }
  }

  drawRecent(results) {
    const signature = JSON.stringify(results);
    if (signature === this.recentSignature) return; // unchanged: a playing result keeps playing
    this.recentSignature = signature;
    const box = this.recentBox;
    box.replaceChildren();
    const attached = new Set(); // a player moves to the new list (the first row of its request id)
    if (!results || !results.length) {
      box.append(el("div", "fal-muted", "No kept result yet."));
      return;
    }
    for (const result of results) {
      const row = el("div", "fal-row fal-result");
      const length = result.seconds ? ` · ${seconds(result.seconds)}` : "";
      row.append(el("div", "", `${result.endpoint}${length} · ${result.reused ? "reused, $0" : result.cost_text}`));
      row.append(el("div", "fal-muted", result.time.replace("T", " ")));
      const idNode = el("div", "fal-id", result.request_id);
      row.append(idNode);
      row.append(button("Copy id", () => copyText(result.request_id, idNode)));
      if (result.kept) {
        const id = result.request_id;
        row.append(button("Play", () => {
          if (row.querySelector("audio")) return;
          const audio = el("audio");
          audio.controls = true;
          audio.src = api.apiURL(`${BASE}/play/${encodeURIComponent(id)}`);
          this.players.set(id, audio);
          row.append(audio);
          audio.play().catch(() => {});
        }));
        if (this.players.has(id) && !attached.has(id)) {
          attached.add(id);
          row.append(this.players.get(id));
        }
      } else {
        const again = button("Fetch again", async () => {
          again.disabled = true;
          const answer = await post("/fetch-again", result.request_id);
          this.message.textContent = answer.body.message || answer.body.error || "";
          const recent = await getJSON("/recent");
          if (recent.ok) this.drawRecent(recent.body.results);
        });
        row.append(el("span", "fal-muted", "kept file deleted "), again);
      }
      box.append(row);
    }
  }
}

let panel = null;
let timer = null;
let ticks = 0;

function tick() {
  if (!panel || !panel.root.isConnected) return; // the tab is closed: nothing is asked
  panel.tick(); // elapsed times count on locally
  ticks += 1;
  if (ticks % (REFRESH_MS / 1000) === 0) panel.refresh();
}

app.registerExtension({
  name: "fal_audio.panel",
  async setup() {
    if (!app.extensionManager?.registerSidebarTab) return; // a frontend without sidebar tabs
    const style = el("style", "", STYLE);
    document.head.append(style);
    api.addEventListener("fal_audio.panel", (event) => panel?.pushed(event.detail));
    api.addEventListener("reconnected", () => panel?.root.isConnected && panel.refresh()); // pushes were missed
    app.extensionManager.registerSidebarTab({
      id: "fal-audio",
      icon: "pi pi-dollar fal-audio-tab-icon",
      title: "fal",
      tooltip: "fal Audio: spend, requests in flight, recent results",
      type: "custom",
      render: (element) => {
        element.replaceChildren();
        const root = el("div", "fal-panel");
        element.append(root);
        panel = new Panel(root);
        panel.refresh();
        if (timer === null) timer = setInterval(tick, 1000);
      },
    });
  },
});
