// Live video from the agent's fragmented MP4 stream (live.mp4) through MediaSource:
// fetch() + ReadableStream, each chunk appended to a SourceBuffer made with the codec the
// X-Camfleet-Codec header names. Latency stays low by jumping to near the buffered end when
// playback drifts behind and by trimming old buffer. Any failure restarts the stream after
// a growing pause (the agent starts every new viewer at a keyframe). Without MSE (or for a
// codec it refuses) the browser plays the URL itself.

import { AuthError, fetchOk } from "./api.js";

const MAX_LAG_S = 1.5; // behind the live edge by more than this: jump
const TARGET_LAG_S = 0.3; // where to jump to, behind the edge
const KEEP_S = 10; // buffer kept behind the playhead
const MAX_QUEUE_BYTES = 8e6; // not appended yet (tab in background): start over instead
const STALL_MS = 10000; // no bytes for this long: start over

export class LivePlayer {
  /** `onState(text, kind)` hears "connecting", "playing", or why it is waiting. */
  constructor(video, url, onState = () => {}) {
    this.video = video;
    this.url = url;
    this.onState = onState;
    this.retryMs = 1000;
    this.stopped = false;
    this.session = null;
    this.start();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.endSession();
  }

  async start() {
    if (this.stopped) return;
    if (!window.MediaSource) return this.playDirect();
    this.onState("connecting", "busy");
    const session = { abort: new AbortController(), queue: [], queued: 0, objectUrl: null };
    this.session = session;
    try {
      const response = await fetchOk(this.url, { signal: session.abort.signal, cache: "no-store" });
      const codec = response.headers.get("X-Camfleet-Codec");
      const mime = `video/mp4; codecs="${codec}"`;
      if (!codec || !MediaSource.isTypeSupported(mime)) {
        session.abort.abort();
        this.playDirect();
        return;
      }
      await this.attach(session, mime);
      await this.pump(session, response.body.getReader());
      throw new Error("the stream ended");
    } catch (err) {
      if (session !== this.session || this.stopped) return; // replaced or stopped on purpose
      if (err instanceof AuthError) return this.stop();
      this.onState(`live video interrupted (${err.message}); retrying`, "error");
      this.endSession();
      this.retryTimer = setTimeout(() => this.start(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 15000);
    }
  }

  /** A MediaSource on the video with one SourceBuffer for `mime`. */
  async attach(session, mime) {
    const source = new MediaSource();
    session.objectUrl = URL.createObjectURL(source);
    this.video.src = session.objectUrl;
    await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    session.source = source;
    session.buffer = source.addSourceBuffer(mime);
    session.buffer.addEventListener("updateend", () => this.drain(session));
    const abort = () => session.abort.abort(new Error(this.video.error?.message || "decoding failed"));
    session.buffer.addEventListener("error", abort);
    this.video.addEventListener("error", abort, { once: true, signal: session.abort.signal });
  }

  async pump(session, reader) {
    for (;;) {
      const stall = setTimeout(() => session.abort.abort(), STALL_MS);
      const { value, done } = await reader.read();
      clearTimeout(stall);
      if (done) return;
      session.queue.push(value);
      session.queued += value.byteLength;
      if (session.queued > MAX_QUEUE_BYTES) throw new Error("fell behind");
      this.drain(session);
    }
  }

  drain(session) {
    try {
      this.step(session);
    } catch (err) {
      session.abort.abort(err); // e.g. QuotaExceededError, or the source went away: start over
    }
  }

  /** Append what is queued, keep near the live edge, trim the past. */
  step(session) {
    const { buffer } = session;
    const { video } = this;
    if (!buffer || buffer.updating || session.source.readyState !== "open") return;
    const ranges = buffer.buffered;
    if (ranges.length) {
      const end = ranges.end(ranges.length - 1);
      if (end - video.currentTime > MAX_LAG_S) video.currentTime = end - TARGET_LAG_S;
      if (video.currentTime - ranges.start(0) > KEEP_S * 2) {
        buffer.remove(0, video.currentTime - KEEP_S);
        return; // continues on updateend
      }
      if (video.paused && !video.ended) video.play().catch(() => {});
    }
    if (!session.queue.length) return;
    const chunk = session.queue.length === 1 ? session.queue[0] : concat(session.queue);
    session.queue = [];
    session.queued = 0;
    buffer.appendBuffer(chunk);
    this.retryMs = 1000;
    this.onState("playing", "ok");
  }

  playDirect() {
    this.onState("playing (without MediaSource)", "ok");
    this.video.src = this.url;
    this.video.play().catch(() => {});
  }

  endSession() {
    const session = this.session;
    this.session = null;
    if (!session) return;
    session.abort.abort();
    this.video.removeAttribute("src");
    this.video.load();
    if (session.objectUrl) URL.revokeObjectURL(session.objectUrl);
  }
}

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
