// One camera: live video with its ROIs drawn over it and their live scores, the inspection
// switch, the ROI editor, and the last hour of recording with playback.

import { apiUrl, get, patch } from "../api.js";
import { h, setAttr, setText } from "../dom.js";
import { LivePlayer } from "../live.js";
import { Overlay } from "../overlay.js";
import { Playback } from "../playback.js";
import { RoiEditor } from "../roi_editor.js";
import { RoiScores } from "../roi_scores.js";
import { reportError, showStatus } from "../status.js";
import { Timeline } from "../timeline.js";
import * as updates from "../updates.js";

const AT_LEAD_US = 5_000_000;
const INSPECTION_SETTLE_MS = 3000;
const SPANS = [["900", "15 min"], ["3600", "1 hour"], ["21600", "6 hours"], ["86400", "24 hours"]];

export function mountCamera(root, name, params) {
  const cam = encodeURIComponent(name);
  const el = {
    state: h("span.state", { dataset: { state: "unknown" } }, "unknown"),
    agent: h("span.agent"),
    liveState: h("span.live-state"),
    inspection: h("button#inspection",
      { type: "button", disabled: true, dataset: { inspection: "off" }, onclick: toggleInspection }, "…"),
    live: h("video#live", { muted: true, autoplay: true, playsinline: true, disablepictureinpicture: true }),
    overlay: h("canvas#overlay"),
    scores: h("ul#roi-scores.empty"),
    detectionNote: h("p.hint", {}, "Waiting for the agent's detection state…"),
    editor: h("section.roi-editor"),
    span: h("select#timeline-span",
      { "aria-label": "time window", onchange: () => timeline.setWindow(Number(el.span.value) * 1e6) },
      ...SPANS.map(([v, l]) => h("option", { value: v }, l))),
    timeline: h("div#timeline", { "aria-busy": "true" }),
    playback: h("video#playback", { controls: true, preload: "auto", hidden: true }),
    playState: h("span.play-state"),
  };
  el.live.muted = true; // the attribute alone does not mute a created element
  el.span.value = "3600";
  const head = h("div.camera-head", {},
    h("a.back", { href: "#/grid" }, "← Cameras"), h("h2", {}, name), el.state, el.agent, el.liveState, el.inspection);
  root.replaceChildren(h("div.camera-page", {},
    head,
    h("div.camera-body", {},
      h("div.stage", {}, el.live, el.overlay),
      h("aside.side", {}, h("h3", {}, "Live scores"), el.scores, el.detectionNote, el.editor)),
    h("section.history", {},
      h("div.history-head", {}, h("h3", {}, "Recording"), el.span, el.playState),
      el.timeline, el.playback)));

  const overlay = new Overlay(el.live, el.overlay);
  const scores = new RoiScores(el.scores);
  const editor = new RoiEditor(el.editor, overlay, el.overlay, name, showCamera);
  const playback = new Playback(el.playback, name, (text, kind) => {
    note(el.playState, text, kind);
    el.playback.hidden = false; // shown once there is something to play
  });
  const timeline = new Timeline(el.timeline, name, (focus, lead) => playback.play(focus, lead));
  const player = new LivePlayer(el.live, apiUrl(`/cameras/${cam}/live.mp4`), (text, kind) => note(el.liveState, text, kind));
  let inspection = null;
  let changedAt = -Infinity; // our own change wins over fleet frames sent before it arrived
  let stopped = false;

  function note(target, text, kind) {
    setText(target, text);
    setAttr(target, "data-kind", kind);
  }

  function showInspection(on) {
    inspection = on;
    el.inspection.disabled = false;
    setText(el.inspection, on ? "Stop inspection" : "Start inspection");
    setAttr(el.inspection, "data-inspection", on ? "on" : "off");
  }

  function showCamera(view) {
    showInspection(view.inspection);
    editor.setConfigured(view.rois);
  }

  async function toggleInspection() {
    el.inspection.disabled = true;
    try {
      showCamera(await patch(`/cameras/${cam}`, { inspection: !inspection }));
      changedAt = performance.now();
      showStatus(inspection ? `Inspection of ${name} started` : `Inspection of ${name} stopped`);
    } catch (err) {
      reportError(err, "Changing inspection");
    } finally {
      el.inspection.disabled = false;
    }
  }

  function onFleet(fleet) {
    const row = (fleet.cameras || []).find((c) => c.name === name);
    if (!row) return;
    setText(el.state, row.state);
    setAttr(el.state, "data-state", row.state);
    setAttr(el.state, "title", row.reason || null);
    const agent = (fleet.agents || []).find((a) => a.agent_id === row.owner);
    setText(el.agent, row.agent_name ?? agent?.name ?? row.owner ?? "unassigned");
    if (row.alarm !== undefined) head.classList.toggle("alarm", row.alarm);
    const settled = performance.now() - changedAt > INSPECTION_SETTLE_MS;
    if (inspection !== null && settled && row.inspection !== inspection) showInspection(row.inspection);
  }

  function onDetection(detection) {
    if (detection.camera !== name) return;
    if (detection.error) {
      setText(el.detectionNote, `Detection state unavailable: ${detection.error}`);
      return;
    }
    const model = detection.model_version ? `model ${detection.model_version}` : "no model";
    const inspecting = detection.inspection ? "inspecting" : "not inspecting";
    const stream = `${detection.stream} stream ${detection.width}×${detection.height}`;
    setText(el.detectionNote, `Agent: ${inspecting}, ${model}, ${stream}`);
    overlay.setDetection(detection);
    scores.show(detection);
    editor.setRunning(detection);
  }

  function onEvent(event) {
    if (event.camera === name) timeline.addEvent(event);
  }

  function openAt(query) {
    const at = Number(query.get("at"));
    const span = Number(el.span.value) * 1e6;
    if (query.has("at") && at > 0) {
      timeline.setWindow(span, at);
      playback.play(at, AT_LEAD_US);
      el.playback.scrollIntoView({ block: "nearest" });
    } else {
      timeline.setWindow(span);
    }
  }

  const subscriptions = [updates.on("fleet", onFleet), updates.on("detection", onDetection), updates.on("event", onEvent)];
  updates.watchCamera(name);
  const tick = setInterval(() => timeline.setPlayhead(playback.currentUs()), 500);
  get(`/cameras/${cam}`).then(
    (view) => stopped || showCamera(view),
    (err) => {
      reportError(err, `Loading camera ${name}`);
      if (err.status === 404) {
        player.stop();
        updates.watchCamera(null); // the feed refuses an unknown camera
        note(el.liveState, `there is no camera ${name}`, "error");
      }
    },
  );
  openAt(params);

  return {
    update: openAt,
    unmount() {
      stopped = true;
      clearInterval(tick);
      subscriptions.forEach((off) => off());
      updates.watchCamera(null);
      player.stop();
      overlay.stop();
      editor.stop();
      timeline.stop();
      playback.stop();
    },
  };
}
