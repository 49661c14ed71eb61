// fal Audio price badges: every paid fal node shows what a run is estimated to cost, and the
// badge follows its widgets (duration, takes, text length, ...) as you edit them. Estimates come
// from the pack's route on ComfyUI's server (prices from fal's pricing API with your key, which
// stays on the server, or the pack's dated price table).
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { ROUTE, apply, changed, requestBody } from "./fal_audio_price_logic.js";

const CHECK_MS = 400; // how often widget values are compared (typing, dragging, pasting, loading)
const seen = new Map();
let busy = false;

async function refresh() {
  if (busy || !app.graph) return;
  const nodes = changed(app.graph._nodes || [], seen);
  if (!nodes.length) return;
  busy = true;
  try {
    const response = await api.fetchApi(ROUTE, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody(nodes)),
    });
    if (response.ok && apply(nodes, await response.json())) app.graph.setDirtyCanvas(true, false);
  } catch (error) {
    for (const node of nodes) seen.delete(node.id); // try again on the next check
    console.warn("fal Audio: price badge", error);
  } finally {
    busy = false;
  }
}

function drawBadge(node, ctx) {
  const badge = node.falPrice;
  if (!badge || node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "bold 11px sans-serif";
  const width = ctx.measureText(badge.text).width + 12;
  const height = 16;
  const x = node.size[0] - width - 6;
  const y = -LiteGraph.NODE_TITLE_HEIGHT + (LiteGraph.NODE_TITLE_HEIGHT - height) / 2;
  ctx.fillStyle = badge.text === "price unknown" ? "#6b5d2f" : "#2f5d3a";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, width, height, 8);
  else ctx.rect(x, y, width, height);
  ctx.fill();
  ctx.fillStyle = "#f0f0f0";
  ctx.textBaseline = "middle";
  ctx.fillText(badge.text, x + 6, y + height / 2);
  ctx.restore();
  node.falPriceDrawn = badge.text; // what is on the canvas now (read by the browser test)
}

app.registerExtension({
  name: "fal-audio.price-badge",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("FalAudio")) return;
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const result = draw?.apply(this, arguments);
      drawBadge(this, ctx);
      return result;
    };
  },
  async setup() {
    setInterval(refresh, CHECK_MS);
  },
});
