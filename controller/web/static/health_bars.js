// The fleet's health at a glance: per agent three bars (processing load, disk used, frames
// skipped by detection), as inline SVG. Green while fine, amber when close, red past it.

const NS = "http://www.w3.org/2000/svg";
const LEVELS = { ok: "#3fb68b", warn: "#e0a43a", bad: "#ff4d4f", off: "#4a525e" };
const ROW = 22;
const LABEL_W = 150;
const BAR_W = 120;
const GAP = 12;
const MEASURES = [
  ["load", (a) => a.heartbeat?.capacity?.load ?? null, [0.7, 0.9]],
  ["disk", (a) => diskShare(a.heartbeat), [0.8, 0.95]],
  ["skipped", (a) => skippedShare(a.heartbeat), [0.05, 0.2]],
];

function el(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function diskShare(hb) {
  const total = hb ? hb.disk_used_bytes + hb.disk_free_bytes : 0;
  return total ? hb.disk_used_bytes / total : null;
}

export function skippedShare(hb) {
  if (!hb) return null;
  const analysed = hb.cameras.reduce((n, c) => n + c.frames_analysed, 0);
  const skipped = hb.cameras.reduce((n, c) => n + c.frames_skipped, 0);
  return analysed + skipped ? skipped / (analysed + skipped) : null;
}

/** An <svg> with one row of bars per agent; offline agents are drawn grey. */
export function healthBars(agents) {
  const width = LABEL_W + MEASURES.length * (BAR_W + GAP);
  const svg = el("svg", { class: "health", viewBox: `0 0 ${width} ${(agents.length + 1) * ROW}`, width, role: "img" });
  svg.append(el("title", {}, "Per agent: load, disk used, frames skipped"));
  MEASURES.forEach(([name], i) => svg.append(el("text", { x: LABEL_W + i * (BAR_W + GAP), y: 14, class: "head" }, name)));
  agents.forEach((agent, row) => {
    const y = (row + 1) * ROW;
    svg.append(el("text", { x: 0, y: y + 14 }, agent.name));
    MEASURES.forEach(([name, value, [warn, bad]], i) => {
      const v = agent.state === "online" ? value(agent) : null;
      const level = v === null ? "off" : v >= bad ? "bad" : v >= warn ? "warn" : "ok";
      const x = LABEL_W + i * (BAR_W + GAP);
      const bar = el("g", { "data-measure": name, "data-level": level });
      bar.append(el("rect", { x, y: y + 4, width: BAR_W, height: 12, rx: 2, fill: "#252b33" }));
      const filled = v === null ? 0 : Math.max(2, v * BAR_W); // a sliver even for 0: known
      bar.append(el("rect", { x, y: y + 4, width: filled, height: 12, rx: 2, fill: LEVELS[level] }));
      bar.append(el("title", {}, v === null ? `${name}: unknown` : `${name}: ${(v * 100).toFixed(1)}%`));
      svg.append(bar);
    });
  });
  return svg;
}
