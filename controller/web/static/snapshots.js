// Snapshot refresh for the camera grid: only cells on screen, one request started at a time
// (a few in flight at most), each visible cell about every PERIOD_MS. Nothing is fetched
// while the tab is hidden. Images are swapped via object URLs, so a failed fetch keeps the
// last good picture (dimmed) instead of a broken-image icon. The grid asks for the small sub
// stream's picture first; a camera that has none (404/503) is asked for its main stream's.

import { ApiError, AuthError, fetchOk } from "./api.js";

const PERIOD_MS = 5000;
const GAP_MS = 120; // between two starts: at most ~8 requests a second in all
const MAX_IN_FLIGHT = 3;

export class Snapshots {
  /** `urlsOf(camera)` gives the snapshot URLs of a camera: preferred, then fallback. */
  constructor(urlsOf) {
    this.urlsOf = urlsOf;
    this.entries = new Map(); // cell -> {cell, urls, img, visible, due, busy, objectUrl}
    this.inFlight = 0;
    this.stopped = false;
    this.observer = new IntersectionObserver((seen) => this.onSeen(seen), { rootMargin: "150px" });
    this.timer = setInterval(() => this.tick(), GAP_MS);
  }

  watch(cell, img, camera) {
    const urls = this.urlsOf(camera);
    this.entries.set(cell, { cell, urls, img, visible: false, due: 0, busy: false, objectUrl: null });
    this.observer.observe(cell);
  }

  unwatch(cell) {
    const entry = this.entries.get(cell);
    if (entry?.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    this.entries.delete(cell);
    this.observer.unobserve(cell);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    this.observer.disconnect();
    for (const cell of [...this.entries.keys()]) this.unwatch(cell);
  }

  onSeen(seen) {
    for (const { target, isIntersecting } of seen) {
      const entry = this.entries.get(target);
      if (entry) entry.visible = isIntersecting;
    }
  }

  tick() {
    if (document.hidden || this.inFlight >= MAX_IN_FLIGHT) return;
    const now = performance.now();
    let next = null;
    for (const entry of this.entries.values()) {
      if (!entry.visible || entry.busy || entry.due > now) continue;
      if (!next || entry.due < next.due) next = entry;
    }
    if (next) this.load(next, now);
  }

  async load(entry, now) {
    entry.busy = true;
    this.inFlight += 1;
    // A little jitter so cells that came into view together drift apart.
    entry.due = now + PERIOD_MS * (0.9 + Math.random() * 0.2);
    try {
      const response = await fetchOk(entry.urls[0], { cache: "no-store" });
      const blob = await response.blob();
      if (this.entries.get(entry.cell) !== entry) return; // unwatched meanwhile
      const url = URL.createObjectURL(blob);
      const previous = entry.objectUrl;
      entry.objectUrl = url;
      entry.img.src = url;
      entry.img.classList.remove("stale");
      entry.img.removeAttribute("title");
      if (previous) entry.img.addEventListener("load", () => URL.revokeObjectURL(previous), { once: true });
    } catch (err) {
      if (err instanceof AuthError) return this.stop();
      if (err instanceof ApiError && [404, 503].includes(err.status) && entry.urls.length > 1) {
        entry.urls = entry.urls.slice(1);
        entry.due = now; // the fallback at once
        return;
      }
      entry.img.classList.add("stale");
      entry.img.title = `no fresh picture: ${err.message}`;
    } finally {
      entry.busy = false;
      this.inFlight -= 1;
    }
  }
}
