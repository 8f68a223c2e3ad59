// The controller's API under /api/v1: JSON calls and media fetches, one place for errors.
// A 401 anywhere means the session is gone: the app is told (it shows the login form) and
// the caller gets an AuthError, which pages simply let go of.

export const API = "/api/v1";

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let unauthorized = () => {};

/** Called (once per 401) so the app can show the login form. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** "/api/v1" + path with the given query parameters; null/undefined/"" values are left out. */
export function apiUrl(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) query.append(key, String(v));
  }
  const text = query.toString();
  return `${API}${path}${text ? `?${text}` : ""}`;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail ?? body);
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

/** fetch() that throws AuthError on 401 and ApiError (with the server's text) on failure. */
export async function fetchOk(url, init = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...init });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the controller cannot be reached");
  }
  if (response.status === 401) {
    unauthorized();
    throw new AuthError("not logged in");
  }
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response;
}

async function call(method, path, { params, body, signal } = {}) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetchOk(apiUrl(path, params), init);
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => call("GET", path, options);
export const post = (path, body, options = {}) => call("POST", path, { ...options, body });
export const patch = (path, body, options = {}) => call("PATCH", path, { ...options, body });

