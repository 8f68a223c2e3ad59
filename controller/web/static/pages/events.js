// The events list: filters, pages followed through next_cursor ("More"), new and changed
// events merged in from the SSE "event" frames (new ones at the top), and a timeline strip.

import { get } from "../api.js";
import { h, setOptions } from "../dom.js";
import { EventRow } from "../event_row.js";
import { EventsTimeline } from "../events_timeline.js";
import { reportError } from "../status.js";
import * as updates from "../updates.js";

const PAGE = 50;
const HEALTH = ["camera_offline", "camera_online", "camera_degraded", "recording_gap"];
const KINDS = {
  "": ["All kinds", null],
  detections: ["Detections", ["anomaly", "camera_moved", "view_lost"]],
  anomaly: ["Anomalies", ["anomaly"]],
  camera_moved: ["Camera moved", ["camera_moved"]],
  view_lost: ["View lost", ["view_lost"]],
  health: ["Camera health", HEALTH],
};
const byName = new Intl.Collator(undefined, { numeric: true }).compare;

export function mountEvents(root) {
  const changed = () => reload();
  const typed = debounce(changed, 350);
  const f = {
    camera: h("select#ev-camera", { "aria-label": "camera", onchange: changed }, h("option", { value: "" }, "All cameras")),
    roi: h("input#ev-roi", { placeholder: "ROI", "aria-label": "ROI", oninput: typed }),
    since: h("input#ev-since", { type: "datetime-local", "aria-label": "since", onchange: changed }),
    minScore: h("input#ev-min-score",
      { type: "number", step: "0.1", min: 0, placeholder: "min score", "aria-label": "minimum score", oninput: typed }),
    ack: h("select#ev-ack", { "aria-label": "acknowledged", onchange: changed },
      h("option", { value: "" }, "All"),
      h("option", { value: "false" }, "Unacknowledged"),
      h("option", { value: "true" }, "Acknowledged")),
    kind: h("select#ev-kind", { "aria-label": "kind", onchange: changed },
      ...Object.entries(KINDS).map(([v, [label]]) => h("option", { value: v }, label))),
  };
  const strip = h("div#events-timeline");
  const list = h("div.event-list");
  const more = h("button.more", { type: "button", hidden: true, onclick: () => loadPage() }, "More");
  const state = h("p.loading", { hidden: true }, "Loading events…");
  root.replaceChildren(
    h("div.toolbar", {}, ...Object.values(f)),
    strip,
    list,
    h("div.list-end", {}, state, more),
  );

  const show = (id) => rows.get(id)?.el.scrollIntoView({ behavior: "smooth", block: "center" });
  const timeline = new EventsTimeline(strip, show);
  const rows = new Map(); // event id -> EventRow, in list order
  let cursor = null;
  let generation = 0; // a reload makes answers to older queries moot

  function filters() {
    const since = f.since.value ? new Date(f.since.value).getTime() * 1000 : null;
    const minScore = f.minScore.value === "" ? null : Number(f.minScore.value);
    return {
      camera: f.camera.value || null,
      roi_id: f.roi.value.trim() || null,
      since_us: since,
      min_score: Number.isFinite(minScore) ? minScore : null,
      acknowledged: f.ack.value || null,
      kind: KINDS[f.kind.value][1],
    };
  }

  function matches(ev, q) {
    return (!q.camera || ev.camera === q.camera)
      && (!q.roi_id || ev.roi_id === q.roi_id)
      && (q.since_us === null || ev.end_us >= q.since_us || ev.open)
      && (q.min_score === null || ev.peak_score >= q.min_score)
      && (!q.acknowledged || String(Boolean(ev.acknowledged_us)) === q.acknowledged)
      && (!q.kind || q.kind.includes(ev.kind));
  }

  async function loadPage() {
    const mine = generation;
    state.hidden = false;
    more.hidden = true;
    try {
      const page = await get("/events", { params: { ...filters(), limit: PAGE, cursor } });
      if (mine !== generation) return;
      for (const ev of page.items) {
        if (rows.has(ev.id)) continue;
        const row = new EventRow(ev);
        rows.set(ev.id, row);
        list.append(row.el);
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      if (!rows.size) list.replaceChildren(h("p.empty", {}, "No events match these filters."));
      redrawStrip();
    } catch (err) {
      if (mine === generation) reportError(err, "Loading events");
    } finally {
      if (mine === generation) state.hidden = true;
    }
  }

  function reload() {
    generation += 1;
    cursor = null;
    rows.clear();
    list.replaceChildren();
    return loadPage();
  }

  function redrawStrip() {
    timeline.show([...rows.values()].map((r) => r.event), filters().since_us);
  }

  function onEvent(ev) {
    const row = rows.get(ev.id);
    if (row) {
      row.update(ev);
    } else if (matches(ev, filters())) {
      const fresh = new EventRow(ev);
      fresh.el.classList.add("new");
      rows.set(ev.id, fresh);
      list.querySelector(":scope > p.empty")?.remove();
      list.prepend(fresh.el);
    } else {
      return;
    }
    redrawStrip();
  }

  get("/cameras").then(
    (cameras) => setOptions(f.camera, [["", "All cameras"], ...cameras.map((c) => c.name).sort(byName).map((n) => [n, n])]),
    (err) => reportError(err, "Loading cameras"),
  );
  const unsubscribe = updates.on("event", onEvent);
  reload();

  return { unmount: unsubscribe };
}

function debounce(fn, ms) {
  let timer = 0;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}
