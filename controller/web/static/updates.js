// The one server-sent-events connection (/api/v1/updates) the pages share.
// Frames: "fleet" (the fleet view), "event" (a stored/changed event) and, while a camera page
// asks for it, "detection" for that camera. EventSource reconnects by itself after a network
// error; after an HTTP error (401, 404, 5xx) it gives up, so we retry with a growing delay,
// and a retry that meets a 401 hands over to the login form instead.

import { AuthError, apiUrl, get } from "./api.js";
import { clearStatus, showStatus } from "./status.js";

const TYPES = ["fleet", "event", "detection"];
const listeners = Object.fromEntries(TYPES.map((t) => [t, new Set()]));
const DOWN_TEXT = "Live updates interrupted; retrying…";
let source = null;
let camera = null;
let running = false;
let retryTimer = 0;
let retryDelay = 1000;
let lastFleet = null;
let lastEventId = null; // of the last "event" frame: a new connection resumes after it

/** Listen to one frame type; returns the unsubscribe function. A fleet listener gets the
 * latest fleet frame at once, so a page opened later does not wait for the next change. */
export function on(type, handler) {
  listeners[type].add(handler);
  if (type === "fleet" && lastFleet) handler(lastFleet);
  return () => listeners[type].delete(handler);
}

export function start() {
  if (running) return;
  running = true;
  open();
}

export function stop() {
  running = false;
  close();
}

/** Ask for `name`'s detection frames (null: none); reconnects with the new query. */
export function watchCamera(name) {
  if (name === camera) return;
  camera = name;
  if (running) {
    close();
    open();
  }
}

function emit(type, data) {
  if (type === "fleet") lastFleet = data;
  for (const handler of listeners[type]) {
    try {
      handler(data);
    } catch (err) {
      console.error(`${type} listener failed`, err);
    }
  }
}

function open() {
  clearTimeout(retryTimer);
  // EventSource resends Last-Event-ID on its own reconnects; a new connection (another
  // camera, or after an HTTP error) says where it was with ?after=, so no change is missed.
  source = new EventSource(apiUrl("/updates", { camera, after: lastEventId }));
  for (const type of TYPES) {
    source.addEventListener(type, (message) => {
      if (message.lastEventId) lastEventId = message.lastEventId;
      try {
        emit(type, JSON.parse(message.data));
      } catch (err) {
        console.error(`bad ${type} frame`, err);
      }
    });
  }
  source.onopen = () => {
    retryDelay = 1000;
    clearStatus(DOWN_TEXT);
  };
  source.onerror = () => {
    if (source?.readyState !== EventSource.CLOSED) return; // the browser reconnects itself
    close();
    showStatus(DOWN_TEXT, "error");
    retryTimer = setTimeout(retry, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  };
}

async function retry() {
  if (!running) return;
  try {
    // Also keeps the grid current (without alarms) while the stream is down.
    emit("fleet", await get("/fleet/health"));
  } catch (err) {
    if (err instanceof AuthError) return; // the login form takes over
  }
  if (running) open();
}

function close() {
  clearTimeout(retryTimer);
  if (source) source.close();
  source = null;
}
