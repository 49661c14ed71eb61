// fal Audio price badges: the logic, without ComfyUI (so it can be tested on its own).
// The extension (fal_audio_price.js) feeds it the graph's nodes and draws what it returns.

export const ROUTE = "/fal_audio/estimate";
export const PREFIX = "FalAudio";

// The widget values of a node as the route wants them: {name: value} (buttons and such left out).
export function widgetValues(node) {
  const values = {};
  for (const widget of node.widgets || []) {
    if (!widget || !widget.name) continue;
    const value = widget.value;
    if (["string", "number", "boolean"].includes(typeof value)) values[widget.name] = value;
  }
  return values;
}

// What the badge depends on: a change of it means "ask again".
export function signature(node) {
  return JSON.stringify([node.type, widgetValues(node)]);
}

// The pack's nodes among the graph's (the server answers only for the paid ones).
export function candidates(nodes) {
  return (nodes || []).filter((node) => typeof node.type === "string" && node.type.startsWith(PREFIX));
}

// Nodes whose widgets changed since `seen` (Map node id -> signature); updates `seen`.
export function changed(nodes, seen) {
  const out = [];
  for (const node of candidates(nodes)) {
    const sig = signature(node);
    if (seen.get(node.id) !== sig) {
      seen.set(node.id, sig);
      out.push(node);
    }
  }
  return out;
}

export function requestBody(nodes) {
  return { nodes: nodes.map((node) => ({ id: String(node.id), type: node.type, widgets: widgetValues(node) })) };
}

// The badge's text and tooltip from one estimate of the route.
export function badgeOf(estimate) {
  if (!estimate || typeof estimate.text !== "string") return null;
  const where = estimate.source ? `price: ${estimate.source}` : "";
  const unit = estimate.unit_price != null ? `$${estimate.unit_price}/${estimate.unit}` : "no known price";
  return { text: estimate.text, tooltip: `fal estimate · ${unit} · ${where}` };
}

// Apply a route answer: sets node.falPrice on every node it names; returns how many were set.
export function apply(nodes, answer) {
  const estimates = (answer && answer.estimates) || {};
  let count = 0;
  for (const node of nodes) {
    const badge = badgeOf(estimates[String(node.id)]);
    if (badge) {
      node.falPrice = badge;
      count += 1;
    }
  }
  return count;
}
