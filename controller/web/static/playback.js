// Playing a stretch of a camera's recording in a <video>: the agent cuts an MP4 from `from`
// to `to` (it starts at the keyframe before `from`; X-Camfleet-First says which frame that
// is), and we seek to the moment asked for. Fetched as a blob so a refusal can be shown.

import { AuthError, apiUrl, fetchOk } from "./api.js";
import { clock, isoToUs, nowUs } from "./format.js";

const CLIP_US = 60_000_000;

export class Playback {
  constructor(video, camera, onState) {
    Object.assign(this, { video, camera, onState });
    this.objectUrl = null;
    this.firstUs = null;
    this.abort = null;
  }

  /** Play from `focusUs`; the clip starts `leadUs` earlier so the moment has some context. */
  async play(focusUs, leadUs = 0) {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    const from = Math.max(0, Math.round(focusUs - leadUs));
    const to = Math.min(from + CLIP_US, nowUs());
    this.onState("loading the recording…", "busy");
    try {
      if (to <= from) throw new Error("that moment is in the future");
      const url = apiUrl(`/cameras/${encodeURIComponent(this.camera)}/clip`, { from, to });
      const response = await fetchOk(url, { signal: abort.signal });
      const first = response.headers.get("X-Camfleet-First");
      const blob = await response.blob();
      this.release();
      this.firstUs = first ? isoToUs(first) : from;
      this.objectUrl = URL.createObjectURL(blob);
      this.video.src = this.objectUrl;
      const offset = Math.max(0, (focusUs - this.firstUs) / 1e6);
      this.video.addEventListener("loadedmetadata", () => {
        this.video.currentTime = offset;
        this.video.play().catch(() => {});
      }, { once: true });
      this.onState(`playing from ${clock(focusUs)}`, "ok");
    } catch (err) {
      if (err.name === "AbortError" || err instanceof AuthError) return;
      this.onState(`no recording there: ${err.message}`, "error");
    }
  }

  /** The recording time at the playhead (null when nothing is loaded). */
  currentUs() {
    return this.firstUs === null || !this.objectUrl ? null : this.firstUs + this.video.currentTime * 1e6;
  }

  release() {
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
  }

  stop() {
    this.abort?.abort();
    this.video.removeAttribute("src");
    this.video.load();
    this.release();
  }
}
