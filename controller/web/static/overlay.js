// The canvas over the live video: each ROI the agent runs drawn where it is now (`placed`,
// the camera's drift applied), coloured by score against threshold; ROIs configured but not
// (yet) run by the agent dashed; the polygon being drawn in the ROI editor.

import { fitCanvas } from "./dom.js";

const COLOURS = { calm: "#3fb68b", near: "#e0a43a", over: "#ff4d4f", none: "#8a94a3" };
const NEAR = 0.75; // share of the threshold from which a score is shown as close

/** "calm", "near", "over" or "none" (not scored): the one scale overlay and list share. */
export function roiLevel(roi) {
  if (roi.event_open) return "over";
  if (roi.score === null || roi.score === undefined || !roi.threshold) return "none";
  const ratio = roi.score / roi.threshold;
  return ratio >= 1 ? "over" : ratio >= NEAR ? "near" : "calm";
}

export class Overlay {
  constructor(video, canvas) {
    this.video = video;
    this.canvas = canvas;
    this.detection = null;
    this.configured = [];
    this.draft = { points: [], closed: false };
    this.resize = new ResizeObserver(() => this.redraw());
    this.resize.observe(video);
    this.redrawSoon = () => this.redraw();
    video.addEventListener("loadedmetadata", this.redrawSoon);
    video.addEventListener("resize", this.redrawSoon);
  }

  stop() {
    this.resize.disconnect();
    this.video.removeEventListener("loadedmetadata", this.redrawSoon);
    this.video.removeEventListener("resize", this.redrawSoon);
  }

  setDetection(detection) {
    this.detection = detection;
    this.redraw();
  }

  setConfigured(rois) {
    this.configured = rois;
    this.redraw();
  }

  setDraft(points, closed) {
    this.draft = { points, closed };
    this.redraw();
  }

  /** Where the picture is inside the video element (object-fit: contain letterboxes it). */
  pictureRect() {
    const box = { w: this.video.clientWidth, h: this.video.clientHeight };
    const d = this.detection;
    const aspect = this.video.videoWidth
      ? this.video.videoWidth / this.video.videoHeight
      : d?.width ? d.width / d.height : 16 / 9;
    const w = Math.min(box.w, box.h * aspect);
    const h = w / aspect;
    return { x: this.video.offsetLeft + (box.w - w) / 2, y: this.video.offsetTop + (box.h - h) / 2, w, h };
  }

  /** A pointer position as normalised picture coordinates (clamped to 0..1). */
  toNormalised(event) {
    const r = this.canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, Number(v.toFixed(4))));
    return [clamp((event.clientX - r.left) / r.width), clamp((event.clientY - r.top) / r.height)];
  }

  redraw() {
    const rect = this.pictureRect();
    Object.assign(this.canvas.style, {
      left: `${rect.x}px`, top: `${rect.y}px`, width: `${rect.w}px`, height: `${rect.h}px`,
    });
    const ctx = fitCanvas(this.canvas, rect.w, rect.h);
    const running = this.detection?.rois || [];
    const ids = new Set(running.map((r) => r.id));
    for (const roi of this.configured) {
      if (!ids.has(roi.id)) this.polygon(ctx, rect, roi.polygon, COLOURS.none, `${roi.id} (not running)`, true);
    }
    for (const roi of running) {
      const score = roi.score === null || roi.score === undefined ? "" : ` ${roi.score.toFixed(2)}`;
      const level = roiLevel(roi);
      this.polygon(ctx, rect, roi.placed || roi.polygon, COLOURS[level], `${roi.id}${score}`, false, level === "over");
    }
    if (this.draft.points.length) this.drawDraft(ctx, rect);
    if (this.detection?.view_lost) this.banner(ctx, "view lost");
  }

  polygon(ctx, rect, points, colour, label, dashed, strong = false) {
    if (!points?.length) return;
    ctx.save();
    ctx.beginPath();
    points.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x * rect.w, y * rect.h));
    ctx.closePath();
    ctx.setLineDash(dashed ? [6, 4] : []);
    ctx.globalAlpha = strong ? 0.25 : 0.1;
    ctx.fillStyle = colour;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.lineWidth = strong ? 3 : 2;
    ctx.strokeStyle = colour;
    ctx.stroke();
    const [lx, ly] = points.reduce(([ax, ay], [x, y]) => (y < ay ? [x, y] : [ax, ay]), [1, 1]);
    ctx.font = "13px system-ui, sans-serif";
    const tw = ctx.measureText(label).width;
    const bx = Math.min(lx * rect.w, rect.w - tw - 8);
    const by = Math.max(ly * rect.h - 20, 0);
    ctx.fillStyle = "rgba(10, 13, 17, 0.75)";
    ctx.fillRect(bx, by, tw + 8, 18);
    ctx.fillStyle = colour;
    ctx.fillText(label, bx + 4, by + 13);
    ctx.restore();
  }

  drawDraft(ctx, rect) {
    const { points, closed } = this.draft;
    ctx.save();
    ctx.strokeStyle = "#e8edf2";
    ctx.fillStyle = "#e8edf2";
    ctx.lineWidth = 2;
    ctx.setLineDash(closed ? [] : [5, 4]);
    ctx.beginPath();
    points.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x * rect.w, y * rect.h));
    if (closed) ctx.closePath();
    ctx.stroke();
    for (const [x, y] of points) {
      ctx.beginPath();
      ctx.arc(x * rect.w, y * rect.h, 3.5, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.restore();
  }

  banner(ctx, text) {
    ctx.save();
    ctx.font = "bold 16px system-ui, sans-serif";
    ctx.fillStyle = "rgba(255, 77, 79, 0.85)";
    ctx.fillRect(8, 8, ctx.measureText(text).width + 16, 26);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, 16, 27);
    ctx.restore();
  }
}
