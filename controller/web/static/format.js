// How numbers and times are shown. Stamps are epoch microseconds (the API's `*_us`).

const pad = (n) => String(n).padStart(2, "0");

/** "14:03:27" in the browser's local time. */
export function clock(us) {
  const d = new Date(us / 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "2024-05-01 14:03:27" in local time. */
export function dateTime(us) {
  const d = new Date(us / 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(us)}`;
}

/** A duration in µs as "4.2 s", "3 min 10 s", "2 h 5 min". */
export function duration(us) {
  const s = us / 1e6;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** How long ago, from now: "12 s ago". */
export function ago(us) {
  return `${duration(Math.max(0, Date.now() * 1000 - us))} ago`;
}

export function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

/** A number with `digits` decimals, or "–" when unknown. */
export function num(value, digits = 0) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

/** An ISO time as the API gives it (e.g. recordings) to epoch µs. */
export function isoToUs(iso) {
  // Date.parse keeps milliseconds only; the microseconds are added back from the text.
  const ms = Date.parse(iso);
  const frac = /\.(\d+)/.exec(iso);
  const micros = frac ? Number(frac[1].padEnd(6, "0").slice(3, 6)) : 0;
  return ms * 1000 + micros;
}

export function nowUs() {
  return Date.now() * 1000;
}
