// The camera grid: one cell per camera, built once and updated in place from the SSE "fleet"
// frames; filters by site, agent and state; snapshots only for cells on screen.

import { apiUrl, get } from "../api.js";
import { h, setAttr, setOptions, setText } from "../dom.js";
import { Snapshots } from "../snapshots.js";
import { reportError } from "../status.js";
import * as updates from "../updates.js";

const NONE = "-"; // filter value for "no site" / "no agent"
const STATES = ["streaming", "connecting", "backoff", "unknown"];
const byName = new Intl.Collator(undefined, { numeric: true }).compare;
const filters = { site: "", agent: "", state: "" }; // kept across visits to the page

export function mountGrid(root) {
  const select = (id, key) =>
    h(`select#${id}`, {
      "aria-label": key,
      onchange: (e) => {
        filters[key] = e.target.value;
        applyFilters();
      },
    });
  const site = select("filter-site", "site");
  const agent = select("filter-agent", "agent");
  const state = select("filter-state", "state");
  const summary = h("span.summary");
  const grid = h("div.grid", { "aria-busy": "true" }, h("p.loading", {}, "Loading cameras…"));
  root.replaceChildren(h("div.toolbar", {}, site, agent, state, summary), grid);

  const cells = new Map(); // camera name -> {el, parts, row}
  const snapshots = new Snapshots((name) => {
    const path = `/cameras/${encodeURIComponent(name)}/snapshot.jpg`;
    return [apiUrl(path, { stream: "sub" }), apiUrl(path)];
  });
  let stopped = false;

  function newCell(name) {
    const parts = {
      img: h("img", { alt: `latest picture of ${name}`, decoding: "async" }),
      name: h("span.name", {}, name),
      state: h("span.state", { dataset: { state: "unknown" } }, "unknown"),
      inspection: h("span.inspection"),
      agent: h("span.agent"),
    };
    const el = h(
      "a.cell",
      { href: `#/camera/${encodeURIComponent(name)}`, dataset: { camera: name } },
      h("div.frame", {}, parts.img, h("span.alarm-badge", {}, "ALARM")),
      h("div.meta", {}, parts.name, parts.state, parts.inspection, parts.agent),
    );
    snapshots.watch(el, parts.img, name);
    return { el, parts, row: null };
  }

  function update(cell, row, agentName) {
    const { parts, el } = cell;
    setText(parts.state, row.state);
    setAttr(parts.state, "data-state", row.state);
    setAttr(parts.state, "title", row.reason || null);
    setText(parts.inspection, row.inspection ? "inspecting" : "not inspecting");
    setAttr(parts.inspection, "data-inspection", row.inspection ? "on" : "off");
    setText(parts.agent, agentName);
    el.classList.toggle("alarm", Boolean(row.alarm));
    cell.row = row;
  }

  function applyFleet(fleet) {
    if (stopped) return;
    const names = new Map((fleet.agents || []).map((a) => [a.agent_id, a.name]));
    const seen = new Set();
    let added = false;
    for (const row of fleet.cameras || []) {
      seen.add(row.name);
      let cell = cells.get(row.name);
      if (!cell) {
        cell = newCell(row.name);
        cells.set(row.name, cell);
        added = true;
      }
      // Frames without `alarm` (polled while the stream is down) keep what was known.
      const merged = { ...row, alarm: row.alarm ?? cell.row?.alarm ?? false };
      update(cell, merged, row.agent_name ?? names.get(row.owner) ?? row.owner ?? "unassigned");
    }
    for (const [name, cell] of cells) {
      if (seen.has(name)) continue;
      snapshots.unwatch(cell.el);
      cell.el.remove();
      cells.delete(name);
    }
    if (added || grid.getAttribute("aria-busy")) {
      grid.removeAttribute("aria-busy");
      const sorted = [...cells.keys()].sort(byName).map((n) => cells.get(n).el);
      grid.replaceChildren(...(sorted.length ? sorted : [h("p.empty", {}, "No cameras registered yet.")]));
    }
    refreshFilters(names);
    applyFilters();
  }

  function refreshFilters(agentNames) {
    const rows = [...cells.values()].map((c) => c.row);
    const sites = [...new Set(rows.map((r) => r.site ?? NONE))].sort(byName);
    setOptions(site, [["", "All sites"], ...sites.map((s) => [s, s === NONE ? "No site" : s])]);
    const owners = [...new Set(rows.map((r) => r.owner ?? NONE))].sort(byName);
    const label = (o) => (o === NONE ? "Unassigned" : agentNames.get(o) ?? o);
    setOptions(agent, [["", "All agents"], ...owners.map((o) => [o, label(o)])]);
    setOptions(state, [["", "All states"], ["alarm", "In alarm"], ...STATES.map((s) => [s, s])]);
    site.value = filters.site;
    agent.value = filters.agent;
    state.value = filters.state;
  }

  function matches(row) {
    if (filters.site && (row.site ?? NONE) !== filters.site) return false;
    if (filters.agent && (row.owner ?? NONE) !== filters.agent) return false;
    if (filters.state === "alarm") return row.alarm;
    return !filters.state || row.state === filters.state;
  }

  function applyFilters() {
    let shown = 0;
    let alarms = 0;
    let streaming = 0;
    for (const { el, row } of cells.values()) {
      const visible = matches(row);
      if (el.hidden === visible) el.hidden = !visible;
      shown += visible;
      alarms += row.alarm ? 1 : 0;
      streaming += row.state === "streaming" ? 1 : 0;
    }
    const total = cells.size;
    const counted = `${shown === total ? total : `${shown} of ${total}`} cameras · ${streaming} streaming`;
    setText(summary, alarms ? `${counted} · ${alarms} in alarm` : counted);
    summary.classList.toggle("has-alarm", alarms > 0);
  }

  get("/fleet/health").then(applyFleet, (err) => reportError(err, "Loading cameras"));
  const unsubscribe = updates.on("fleet", applyFleet);

  return {
    unmount() {
      stopped = true;
      unsubscribe();
      snapshots.stop();
    },
  };
}
