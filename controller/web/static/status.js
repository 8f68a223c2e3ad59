// The calm status line in the header: one message at a time, errors stay until replaced.

import { AuthError } from "./api.js";

const INFO_MS = 4000;
let timer = 0;

function line() {
  return document.getElementById("status");
}

/** Show `text`; kind "info" fades after a few seconds, "error" stays until the next message. */
export function showStatus(text, kind = "info") {
  const el = line();
  if (!el) return;
  clearTimeout(timer);
  el.textContent = text ?? "";
  el.dataset.kind = kind;
  if (kind === "info" && text) timer = setTimeout(() => clearStatus(text), INFO_MS);
}

/** Clear the line, or only when it still shows `text`. */
export function clearStatus(text) {
  const el = line();
  if (el && (text === undefined || el.textContent === text)) el.textContent = "";
}

/** Report an error from `what` unless it is one nobody needs to see (401, abort). */
export function reportError(err, what) {
  if (err instanceof AuthError || err?.name === "AbortError") return;
  showStatus(`${what}: ${err?.message || err}`, "error");
}
