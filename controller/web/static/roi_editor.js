// Drawing and editing a camera's ROIs on its live frame. Points are clicked on the overlay
// canvas (normalised 0..1); a double-click or "Finish" closes the polygon; "Save" sends the
// camera's whole ROI list (PATCH /cameras/NAME {"rois": [...]}). Each configured ROI says
// whether the agent runs it yet (the detection frames list what the agent runs).

import { patch } from "./api.js";
import { h, setAttr, setText } from "./dom.js";
import { reportError, showStatus } from "./status.js";

const ID_PATTERN = /^[a-z0-9_-]{1,64}$/;
const SAME_POINT = 0.004; // a second click this close (a double-click) adds no point

export class RoiEditor {
  constructor(panel, overlay, canvas, camera, onSaved) {
    Object.assign(this, { overlay, canvas, camera, onSaved });
    this.configured = [];
    this.running = null; // the agent's ROIs as last reported (null: not heard yet)
    this.points = [];
    this.drawing = false;
    this.closed = false;
    this.list = h("ul.roi-list");
    this.idInput = h("input#roi-id", { placeholder: "e.g. door", pattern: "[a-z0-9_-]{1,64}", maxlength: 64 });
    this.sensitivity = h("input#roi-sensitivity", { type: "number", min: 0, max: 1, step: 0.05, value: 0.5 });
    this.finish = h("button#roi-finish", { type: "button", disabled: true, onclick: () => this.close() }, "Finish polygon");
    this.hint = h("p.hint", {}, "Draw a new ROI, or pick one to change its sensitivity.");
    panel.append(
      h("h3", {}, "Regions of interest"),
      this.list,
      h("div.roi-form", {},
        h("div.buttons", {},
          h("button#roi-draw", { type: "button", onclick: () => this.startDrawing() }, "Draw new ROI"),
          this.finish,
          h("button", { type: "button", onclick: () => this.reset() }, "Cancel")),
        h("label", {}, "ID", this.idInput),
        h("label", {}, "Sensitivity (0–1)", this.sensitivity),
        h("button#roi-save.primary", { type: "button", onclick: () => this.save() }, "Save ROI"),
        this.hint),
    );
    this.onClick = (e) => this.addPoint(e);
    this.onDouble = (e) => {
      e.preventDefault();
      this.close();
    };
    this.onKey = (e) => e.key === "Escape" && this.drawing && this.reset();
    canvas.addEventListener("click", this.onClick);
    canvas.addEventListener("dblclick", this.onDouble);
    document.addEventListener("keydown", this.onKey);
  }

  stop() {
    this.canvas.removeEventListener("click", this.onClick);
    this.canvas.removeEventListener("dblclick", this.onDouble);
    document.removeEventListener("keydown", this.onKey);
  }

  setConfigured(rois) {
    this.configured = rois;
    this.overlay.setConfigured(rois);
    this.renderList();
  }

  setRunning(detection) {
    this.running = detection?.rois ? new Map(detection.rois.map((r) => [r.id, r])) : null;
    for (const item of this.list.children) this.markReported(item);
  }

  renderList() {
    const items = this.configured.map((roi) =>
      h("li", { dataset: { roiConfig: roi.id } },
        h("button.link", { type: "button", title: "edit", onclick: () => this.pick(roi) }, roi.id),
        h("span.sensitivity", {}, `sensitivity ${roi.sensitivity}`),
        h("span.reported"),
        h(`button#roi-delete-${roi.id}.quiet`, { type: "button", onclick: () => this.remove(roi.id) }, "Delete")),
    );
    this.list.replaceChildren(...(items.length ? items : [h("li.empty", {}, "No ROIs yet.")]));
    for (const item of this.list.children) this.markReported(item);
  }

  markReported(item) {
    const roi = this.configured.find((r) => r.id === item.dataset.roiConfig);
    if (!roi) return;
    const running = this.running?.get(roi.id);
    const state = this.running === null ? "unknown"
      : !running ? "no"
      : samePolygon(running.polygon, roi.polygon) ? "yes"
      : "older";
    const text = { unknown: "agent not heard yet", no: "not running yet", yes: "running", older: "older shape running" };
    setAttr(item, "data-reported", state);
    setText(item.querySelector(".reported"), text[state]);
  }

  pick(roi) {
    this.reset();
    this.idInput.value = roi.id;
    this.sensitivity.value = roi.sensitivity;
    setText(this.hint, `Change the sensitivity of ${roi.id} and save, or draw a new shape for it.`);
  }

  startDrawing() {
    this.points = [];
    this.closed = false;
    this.drawing = true;
    this.canvas.classList.add("drawing");
    setText(this.hint, "Click the corners on the picture; double-click or Finish to close it.");
    this.redraw();
  }

  addPoint(event) {
    if (!this.drawing || this.closed) return;
    const point = this.overlay.toNormalised(event);
    const last = this.points.at(-1);
    if (last && Math.hypot(point[0] - last[0], point[1] - last[1]) < SAME_POINT) return;
    this.points.push(point);
    this.redraw();
  }

  close() {
    if (this.points.length < 3) {
      setText(this.hint, "A region needs at least three corners.");
      return;
    }
    this.closed = true;
    this.drawing = false;
    this.canvas.classList.remove("drawing");
    setText(this.hint, "Give it an ID and a sensitivity, then save.");
    this.redraw();
    this.idInput.focus();
  }

  reset() {
    this.points = [];
    this.closed = false;
    this.drawing = false;
    this.canvas.classList.remove("drawing");
    setText(this.hint, "Draw a new ROI, or pick one to change its sensitivity.");
    this.redraw();
  }

  redraw() {
    this.finish.disabled = !this.drawing || this.points.length < 3;
    this.overlay.setDraft(this.points, this.closed);
  }

  async save() {
    const id = this.idInput.value.trim();
    const sensitivity = Number(this.sensitivity.value);
    const existing = this.configured.find((r) => r.id === id);
    if (this.drawing && this.points.length >= 3) this.close();
    const problem = !ID_PATTERN.test(id) ? "The ID takes lower-case letters, digits, - and _ (up to 64)."
      : !(sensitivity >= 0 && sensitivity <= 1) ? "Sensitivity is a number from 0 to 1."
      : !this.closed && !existing ? "Draw the region first (at least three corners)."
      : null;
    if (problem) return setText(this.hint, problem);
    const polygon = this.closed ? this.points : existing.polygon;
    const roi = { id, polygon, sensitivity };
    const rois = existing
      ? this.configured.map((r) => (r.id === id ? roi : r))
      : [...this.configured, roi];
    if (await this.send(rois, `ROI ${id} saved; the agent picks it up shortly`)) {
      this.reset();
      this.idInput.value = "";
    }
  }

  remove(id) {
    return this.send(this.configured.filter((r) => r.id !== id), `ROI ${id} deleted`);
  }

  async send(rois, done) {
    try {
      const view = await patch(`/cameras/${encodeURIComponent(this.camera)}`, { rois });
      this.onSaved(view);
      showStatus(done);
      return true;
    } catch (err) {
      reportError(err, "Saving the ROIs");
      return false;
    }
  }
}

function samePolygon(a, b) {
  return a?.length === b.length && a.every(([x, y], i) => Math.abs(x - b[i][0]) < 1e-3 && Math.abs(y - b[i][1]) < 1e-3);
}
