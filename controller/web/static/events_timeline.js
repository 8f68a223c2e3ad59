// The strip over the events list: every listed event as a mark on one time axis, so bursts
// and quiet hours show at a glance. A click on a mark scrolls to its row.

import { h } from "./dom.js";
import { dateTime, nowUs } from "./format.js";

export class EventsTimeline {
  constructor(el, onPick) {
    Object.assign(this, { el, onPick });
    this.track = h("div.track");
    this.from = h("span.from");
    this.to = h("span.to");
    el.replaceChildren(this.track, h("div.ends", {}, this.from, this.to));
  }

  /** Draw `events` over [sinceUs or the oldest, now]. */
  show(events, sinceUs = null) {
    const end = nowUs();
    const start = sinceUs ?? Math.min(end - 3600e6, ...events.map((e) => e.start_us));
    const span = Math.max(end - start, 1);
    const marks = events.map((ev) => {
      const left = ((ev.start_us - start) / span) * 100;
      const width = (((ev.open ? end : ev.end_us) - ev.start_us) / span) * 100;
      const mark = h("div.mark", {
        dataset: { event: ev.id, kind: ev.kind },
        title: `${ev.kind.replaceAll("_", " ")} · ${ev.camera} · ${dateTime(ev.start_us)}`,
        style: { left: `${Math.max(0, left)}%`, width: `${Math.max(width, 0.2)}%` },
        onclick: () => this.onPick(ev.id),
      });
      mark.classList.toggle("acknowledged", Boolean(ev.acknowledged_us));
      return mark;
    });
    this.track.replaceChildren(...marks);
    this.from.textContent = dateTime(start);
    this.to.textContent = "now";
  }
}
