// One row of the events list: snapshot, what and when, the score plot, and the actions
// (acknowledge, play the clip, open the recording at the peak). Updated in place when the
// event changes (closed, clip arrived, acknowledged).

import { apiUrl, post } from "./api.js";
import { h, setAttr, setText } from "./dom.js";
import { dateTime, duration, num } from "./format.js";
import { drawScores } from "./plot.js";
import { reportError } from "./status.js";

export class EventRow {
  constructor(event) {
    const id = encodeURIComponent(event.id);
    this.img = h("img", {
      loading: "lazy", decoding: "async", alt: "event snapshot", src: apiUrl(`/events/${id}/snapshot.jpg`),
      onerror: () => this.img.classList.add("missing"),
    });
    this.title = h("div.ev-title");
    this.meta = h("div.ev-meta");
    this.plot = h("canvas.scores", { width: 240, height: 64 });
    this.ack = h("button.ack", { type: "button", onclick: () => this.acknowledge() });
    this.play = h("button.play", { type: "button", onclick: () => this.playClip() }, "Play clip");
    this.open = h("a.open-recording", {}, "Open recording");
    this.el = h("article.event-row", { dataset: { event: event.id } },
      h("div.ev-picture", {}, this.img),
      h("div.ev-main", {}, this.title, this.meta, this.plot),
      h("div.ev-actions", {}, this.ack, this.play, this.open));
    this.update(event);
  }

  update(event) {
    const before = this.event;
    this.event = event;
    const where = event.roi_id ? ` · ${event.roi_id}` : "";
    const title = `${event.kind.replaceAll("_", " ")} · ${event.camera}${where}`;
    setText(this.title, event.open ? `${title} · going on` : title);
    const threshold = event.threshold ? ` / ${num(event.threshold, 2)}` : "";
    const score = event.roi_id ? ` · peak ${num(event.peak_score, 2)}${threshold}` : "";
    const lasted = event.end_us - event.start_us;
    const length = event.open || !lasted ? "" : ` · ${duration(lasted)}`;
    const detail = event.detail ? ` · ${event.detail}` : "";
    setText(this.meta, `${dateTime(event.start_us)}${length}${score}${detail}`);
    setAttr(this.el, "data-kind", event.kind);
    this.el.classList.toggle("open", event.open);
    this.el.classList.toggle("acknowledged", Boolean(event.acknowledged_us));
    const acked = Boolean(event.acknowledged_us);
    setText(this.ack, acked ? `Acknowledged${event.acknowledged_by ? ` by ${event.acknowledged_by}` : ""}` : "Acknowledge");
    this.ack.disabled = acked;
    this.play.disabled = !event.clip_complete;
    setAttr(this.play, "title", event.clip_complete ? null : "the clip has not arrived yet");
    setAttr(this.open, "href", `#/camera/${encodeURIComponent(event.camera)}?at=${event.peak_us}`);
    if (!before || before.scores?.length !== event.scores?.length || before.open !== event.open) {
      requestAnimationFrame(() => drawScores(this.plot, event));
    }
    if (before && this.img.classList.contains("missing") && before.end_us !== event.end_us) {
      this.img.classList.remove("missing");
      this.img.src = `${apiUrl(`/events/${encodeURIComponent(event.id)}/snapshot.jpg`)}?v=${event.end_us}`;
    }
  }

  async acknowledge() {
    this.ack.disabled = true;
    try {
      this.update(await post(`/events/${encodeURIComponent(this.event.id)}/ack`));
    } catch (err) {
      this.ack.disabled = false;
      reportError(err, "Acknowledging the event");
    }
  }

  playClip() {
    if (!this.video) {
      this.video = h("video.clip", { controls: true, autoplay: true, preload: "auto",
        onerror: () => reportError(new Error("the clip could not be played"), `Event ${this.event.id}`) });
      this.el.append(this.video);
    }
    this.video.src = apiUrl(`/events/${encodeURIComponent(this.event.id)}/clip`);
    this.video.play().catch(() => {});
  }
}
