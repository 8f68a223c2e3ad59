// An event's score over time on a small canvas: the event's interval shaded, the threshold
// as a dashed line, the score as a line (red where it is over the threshold).

import { fitCanvas } from "./dom.js";

const STYLE = { shade: "rgba(255, 77, 79, 0.14)", line: "#8fb8d8", over: "#ff4d4f", threshold: "#e0a43a", text: "#8a94a3" };

export function drawScores(canvas, event) {
  const scores = event.scores || [];
  canvas.classList.toggle("empty", scores.length < 2); // a slim strip: nothing to plot
  const width = canvas.clientWidth || 240;
  const height = canvas.clientHeight || 64;
  const ctx = fitCanvas(canvas, width, height);
  if (scores.length < 2) {
    ctx.fillStyle = STYLE.text;
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillText(event.roi_id ? "no score series" : "camera-wide event: no score", 8, height / 2 + 4);
    return;
  }
  const end = event.open ? scores.at(-1)[0] : event.end_us;
  const t0 = Math.min(scores[0][0], event.start_us);
  const t1 = Math.max(scores.at(-1)[0], end, t0 + 1);
  const top = Math.max(event.threshold ?? 0, ...scores.map(([, s]) => s), 1e-6) * 1.15;
  const x = (t) => ((t - t0) / (t1 - t0)) * width;
  const y = (s) => height - 2 - (s / top) * (height - 4);

  ctx.fillStyle = STYLE.shade;
  ctx.fillRect(x(event.start_us), 0, Math.max(1, x(end) - x(event.start_us)), height);

  if (event.threshold !== null && event.threshold !== undefined) {
    ctx.strokeStyle = STYLE.threshold;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(0, y(event.threshold));
    ctx.lineTo(width, y(event.threshold));
    ctx.stroke();
    ctx.setLineDash([]);
  }

  ctx.lineWidth = 1.5;
  for (let i = 1; i < scores.length; i += 1) {
    const [ta, sa] = scores[i - 1];
    const [tb, sb] = scores[i];
    const over = event.threshold !== null && Math.max(sa, sb) >= event.threshold;
    ctx.strokeStyle = over ? STYLE.over : STYLE.line;
    ctx.beginPath();
    ctx.moveTo(x(ta), y(sa));
    ctx.lineTo(x(tb), y(sb));
    ctx.stroke();
  }
}
