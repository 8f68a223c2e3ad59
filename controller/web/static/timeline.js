// A camera's recording over a time window (the last hour by default): recorded stretches
// (.segment), gaps with their reason (.gap) and events (.event-mark). A click on the strip
// asks for playback from that moment; a click on an event mark from just before the event.

import { get } from "./api.js";
import { h } from "./dom.js";
import { clock, dateTime, isoToUs, nowUs } from "./format.js";
import { reportError } from "./status.js";

const MERGE_US = 2_000_000; // segments closer than this are drawn as one stretch
const TICK_MINUTES = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360];
const EVENT_LEAD_US = 5_000_000;

export class Timeline {
  /** `onPick(focusUs, leadUs)` is asked to play the recording at a moment. */
  constructor(el, camera, onPick) {
    Object.assign(this, { el, camera, onPick });
    this.track = h("div.track", { onclick: (e) => this.clicked(e), onmousemove: (e) => this.hover(e) });
    this.axis = h("div.axis");
    this.playhead = h("div.playhead", { hidden: true });
    el.replaceChildren(this.track, this.axis);
    this.events = new Map();
    this.spanUs = 3600e6;
    this.endUs = nowUs();
    this.follow = true; // the window ends now and moves with time
    this.recording = { segments: [], gaps: [] };
    this.timer = setInterval(() => this.follow && this.load(), 30000);
  }

  stop() {
    clearInterval(this.timer);
  }

  /** A window of `spanUs` ending now, or centred on `aroundUs` when that is older. */
  setWindow(spanUs, aroundUs = null) {
    this.spanUs = spanUs;
    this.follow = aroundUs === null || aroundUs > nowUs() - spanUs * 0.9;
    this.endUs = this.follow ? nowUs() : Math.min(nowUs(), aroundUs + spanUs / 2);
    return this.load();
  }

  async load() {
    if (this.follow) this.endUs = nowUs();
    const from = Math.round(this.endUs - this.spanUs);
    const to = Math.round(this.endUs);
    const cam = encodeURIComponent(this.camera);
    this.el.setAttribute("aria-busy", "true");
    try {
      const [recording, events] = await Promise.all([
        get(`/cameras/${cam}/recordings`, { params: { from, to } }),
        get("/events", { params: { camera: this.camera, since_us: from, until_us: to, limit: 500 } }),
      ]);
      this.recording = recording;
      this.events = new Map(events.items.map((e) => [e.id, e]));
      this.render();
    } catch (err) {
      reportError(err, `Loading the recording of ${this.camera}`);
    } finally {
      this.el.removeAttribute("aria-busy");
    }
  }

  addEvent(event) {
    this.events.set(event.id, event);
    this.render();
  }

  /** Show where playback is (null hides it). */
  setPlayhead(us) {
    const x = us === null ? null : this.x(us);
    this.playhead.hidden = x === null || x < 0 || x > 100;
    if (!this.playhead.hidden) this.playhead.style.left = `${x}%`;
  }

  start() {
    return this.endUs - this.spanUs;
  }

  x(us) {
    return ((us - this.start()) / this.spanUs) * 100;
  }

  bar(cls, fromUs, toUs, attrs = {}) {
    const left = Math.max(0, this.x(fromUs));
    const right = Math.min(100, this.x(toUs));
    if (right <= 0 || left >= 100) return null;
    return h(`div.${cls}`, { ...attrs, style: { left: `${left}%`, width: `${Math.max(right - left, 0.15)}%` } });
  }

  render() {
    const now = nowUs();
    const parts = [];
    for (const [from, to] of mergeSegments(this.recording.segments, now)) {
      parts.push(this.bar("segment", from, to, { title: `recorded ${clock(from)}–${clock(to)}` }));
    }
    for (const gap of this.recording.gaps) {
      const from = isoToUs(gap.start);
      const to = isoToUs(gap.end);
      const why = [gap.reason, gap.detail].filter(Boolean).join(": ");
      parts.push(this.bar("gap", from, to, { title: `no video ${clock(from)}–${clock(to)}: ${why}` }));
    }
    for (const ev of this.events.values()) {
      const to = ev.open ? now : Math.max(ev.end_us, ev.start_us + 1);
      const mark = this.bar("event-mark", ev.start_us, to, {
        dataset: { event: ev.id, kind: ev.kind },
        title: `${ev.kind}${ev.roi_id ? ` in ${ev.roi_id}` : ""} at ${dateTime(ev.start_us)}`,
        onclick: (e) => {
          e.stopPropagation();
          this.onPick(ev.start_us, EVENT_LEAD_US);
        },
      });
      mark?.classList.toggle("open", ev.open);
      mark?.classList.toggle("acknowledged", Boolean(ev.acknowledged_us));
      parts.push(mark);
    }
    this.track.replaceChildren(...parts.filter(Boolean), this.playhead);
    this.renderAxis();
  }

  renderAxis() {
    const stepMin = TICK_MINUTES.find((m) => this.spanUs / (m * 60e6) <= 8) ?? 720;
    const step = stepMin * 60e6;
    const ticks = [];
    for (let t = Math.ceil(this.start() / step) * step; t <= this.endUs; t += step) {
      const x = this.x(t);
      if (x < 2 || x > 98) continue; // a label at the very edge would be cut in half
      ticks.push(h("span.tick", { style: { left: `${x}%` } }, clock(t).slice(0, 5)));
    }
    this.axis.replaceChildren(...ticks);
  }

  at(event) {
    const r = this.track.getBoundingClientRect();
    return this.start() + ((event.clientX - r.left) / r.width) * this.spanUs;
  }

  clicked(event) {
    this.onPick(this.at(event), 0);
  }

  hover(event) {
    this.track.title = `play from ${clock(this.at(event))}`;
  }
}

/** Recorded stretches [from, to] in µs, touching segments joined (an open one ends now). */
function mergeSegments(segments, now) {
  const runs = [];
  for (const seg of segments) {
    const from = isoToUs(seg.start);
    const to = seg.end ? isoToUs(seg.end) : now;
    const last = runs.at(-1);
    if (last && from - last[1] <= MERGE_US) last[1] = Math.max(last[1], to);
    else runs.push([from, to]);
  }
  return runs;
}
