// Small DOM helpers shared by the pages.

/**
 * Create an element: h("a#id.cell", {href: "#/x", dataset: {camera: "c1"}}, "text", child).
 * Attributes starting with "on" are listeners; `dataset` and `style` objects are merged in;
 * false/null attributes and children are skipped.
 */
export function h(spec, attrs = {}, ...children) {
  const [head, ...classes] = spec.split(".");
  const [tag, id] = head.split("#");
  const el = document.createElement(tag || "div");
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "dataset" || key === "style") Object.assign(el[key], value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = [el.className, value].join(" ").trim();
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** Set text only when it changed: writes to the DOM cost layout even when nothing changes. */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** Set (or, for null, remove) an attribute only when it changed. */
export function setAttr(el, name, value) {
  if (value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) {
    el.setAttribute(name, String(value));
  }
}

/** Fill a <select> with ["value", "label"] pairs, keeping the current choice if still offered. */
export function setOptions(select, pairs) {
  const current = select.value;
  const wanted = pairs.map(([v, l]) => `${v}\u0000${l}`).join("\u0001");
  if (select.dataset.options === wanted) return;
  select.dataset.options = wanted;
  select.replaceChildren(...pairs.map(([v, l]) => h("option", { value: v }, l)));
  select.value = pairs.some(([v]) => v === current) ? current : pairs[0]?.[0] ?? "";
}

/** The canvas's backing store sized to its CSS box (times the pixel ratio); a 2D context. */
export function fitCanvas(canvas, cssWidth, cssHeight) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(cssWidth * ratio));
  const hgt = Math.max(1, Math.round(cssHeight * ratio));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== hgt) canvas.height = hgt;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  return ctx;
}
