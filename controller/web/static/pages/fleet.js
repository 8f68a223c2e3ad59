// The agents: state, cameras, throughput, inference latency, disk, clock, models; with the
// health bars above. Refreshed every few seconds (heartbeats come that often).

import { get } from "../api.js";
import { h } from "../dom.js";
import { ago, bytes, num } from "../format.js";
import { healthBars, skippedShare } from "../health_bars.js";
import { reportError } from "../status.js";

const REFRESH_MS = 5000;
const COLUMNS = [
  "Agent", "State", "Cameras", "fps in", "Analysed", "Skipped", "Inference p50 / p99",
  "Disk used / free", "Clock offset", "Models", "Heartbeat",
];

/** Sum and worst (largest) of a per-camera figure; unknown (null) values are left out. */
function total(cams, pick) {
  return cams.reduce((n, c) => n + (pick(c) ?? 0), 0);
}

function worst(cams, pick) {
  const known = cams.map(pick).filter((v) => v !== null && v !== undefined);
  return known.length ? Math.max(...known) : null;
}

const fpsIn = (c) => c.streams.reduce((n, s) => n + s.fps_in, 0);
const p50 = (c) => c.inference_ms_p50;
const p99 = (c) => c.inference_ms_p99;

export function mountFleet(root) {
  const picture = h("div.health-picture");
  const message = (cls, text) => h("tr", {}, h(`td.${cls}`, { colspan: COLUMNS.length }, text));
  const body = h("tbody", {}, message("loading", "Loading agents…"));
  const head = h("thead", {}, h("tr", {}, ...COLUMNS.map((c) => h("th", {}, c))));
  root.replaceChildren(h("section.fleet", {},
    h("h2", {}, "Fleet"), picture, h("div.table-wrap", {}, h("table.agents", {}, head, body))));
  const open = new Set(); // agents whose camera details are unfolded, kept across refreshes
  let agents = [];
  let models = []; // the stored models, each with the cameras using it
  let timer = 0;
  let stopped = false;

  function render() {
    picture.replaceChildren(healthBars(agents));
    const rows = agents.flatMap(agentRows);
    body.replaceChildren(...(rows.length ? rows : [message("empty", "No agents enrolled yet.")]));
  }

  async function refresh() {
    try {
      // Models are per camera: an agent runs those of the cameras it owns.
      [agents, models] = await Promise.all([get("/agents"), get("/models")]);
      if (!stopped) render();
    } catch (err) {
      reportError(err, "Loading agents");
    } finally {
      if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function agentRows(agent) {
    const hb = agent.heartbeat;
    const cams = hb?.cameras || [];
    const skipped = skippedShare(hb);
    const skippedText = `${total(cams, (c) => c.frames_skipped).toLocaleString()}`
      + ` (${num(skipped === null ? null : skipped * 100, 1)}%)`;
    const clock = hb ? `${num(hb.clock_offset_ms, 1)} ms${hb.clock_synced ? "" : " (not synced)"}` : "–";
    const unfold = h("button.link", { type: "button", onclick: () => flip(agent.agent_id) }, `${agent.cameras.length}`);
    const row = h("tr.agent-row", { dataset: { agent: agent.agent_id, state: agent.state } },
      h("td", {}, h("b", {}, agent.name), h("div.sub", {}, agent.hostname)),
      h("td", {}, h("span.state", { dataset: { state: agent.state } }, agent.state)),
      h("td.cameras", { title: agent.cameras.join(", ") }, unfold),
      h("td.num", {}, hb ? num(total(cams, fpsIn), 1) : "–"),
      h("td.num", {}, hb ? total(cams, (c) => c.frames_analysed).toLocaleString() : "–"),
      h("td.num", {}, hb ? skippedText : "–"),
      h("td.num", {}, `${num(worst(cams, p50), 1)} / ${num(worst(cams, p99), 1)} ms`),
      h("td.num", {}, hb ? `${bytes(hb.disk_used_bytes)} / ${bytes(hb.disk_free_bytes)}` : "–"),
      h("td.num", { class: hb && !hb.clock_synced ? "warn" : "" }, clock),
      h("td.models", {}, ...modelsOf(agent)),
      h("td", {}, agent.heartbeat_us ? ago(agent.heartbeat_us) : "never"),
    );
    return open.has(agent.agent_id) ? [row, cameraDetail(agent)] : [row];
  }

  /** The models its cameras are scored with now, as its heartbeat says (what runs, not
   * what was assigned); an assigned model not running yet is marked as such. */
  function modelsOf(agent) {
    const running = new Map();
    for (const c of agent.heartbeat?.cameras || []) {
      if (c.model_version) running.set(c.model_version, [...(running.get(c.model_version) || []), c.camera]);
    }
    const lines = [...running].map(([version, users]) => h("div", { title: `scoring ${users.join(", ")}` }, version));
    const owned = new Set(agent.cameras);
    for (const m of models) {
      const users = m.cameras.filter((c) => owned.has(c));
      if (users.length && !running.has(m.model_version)) {
        lines.push(h("div.pending", { title: `assigned to ${users.join(", ")}, not running yet` }, `${m.model_version} (pending)`));
      }
    }
    return lines.length ? lines : ["none"];
  }

  function cameraDetail(agent) {
    const stats = new Map((agent.heartbeat?.cameras || []).map((c) => [c.camera, c]));
    const lines = agent.cameras.map((name) => {
      const c = stats.get(name);
      const text = !c ? " no stats yet" : ` ${c.streams.map((s) => `${s.stream} ${s.state} ${num(s.fps_in, 1)} fps`).join(", ")}`
        + `; analysed ${c.frames_analysed}, skipped ${c.frames_skipped}`
        + `, inference ${num(p50(c), 1)} / ${num(p99(c), 1)} ms`
        + `, model ${c.model_version || "none"}`;
      return h("li", { dataset: { camera: name } }, h("a", { href: `#/camera/${encodeURIComponent(name)}` }, name), text);
    });
    return h("tr.camera-detail", {}, h("td", { colspan: COLUMNS.length }, h("ul", {}, ...lines)));
  }

  function flip(agentId) {
    if (!open.delete(agentId)) open.add(agentId);
    render();
  }

  refresh();
  return {
    unmount() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
