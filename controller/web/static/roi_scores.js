// The live score list beside the video: one row per ROI the agent runs, updated in place.

import { h, setAttr, setText } from "./dom.js";
import { num } from "./format.js";
import { roiLevel } from "./overlay.js";

export class RoiScores {
  constructor(list) {
    this.list = list;
    this.rows = new Map(); // roi id -> {el, score, bar}
  }

  /** Show the ROIs of a detection frame (null: nothing known). */
  show(detection) {
    const rois = detection?.rois || [];
    const ids = new Set(rois.map((r) => r.id));
    for (const [id, row] of this.rows) {
      if (!ids.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    for (const roi of rois) {
      const row = this.rows.get(roi.id) || this.add(roi.id);
      const level = roiLevel(roi);
      setAttr(row.el, "data-level", level);
      const threshold = roi.threshold ? ` / ${num(roi.threshold, 2)}` : "";
      const state = !roi.trained ? "no model" : roi.event_open ? "event open" : "";
      setText(row.score, roi.score === null || roi.score === undefined ? "–" : `${num(roi.score, 2)}${threshold}`);
      setText(row.state, state);
      const share = roi.score && roi.threshold ? Math.min(1, roi.score / roi.threshold / 1.5) : 0;
      row.bar.style.transform = `scaleX(${share})`;
    }
    this.list.classList.toggle("empty", rois.length === 0);
  }

  add(id) {
    const row = {
      score: h("span.score"),
      state: h("span.roi-state"),
      bar: h("span.bar-fill"),
    };
    row.el = h("li", { dataset: { roi: id } }, h("span.roi-id", {}, id), row.score, row.state,
      h("span.bar", {}, row.bar));
    this.list.append(row.el);
    this.rows.set(id, row);
    return row;
  }
}
