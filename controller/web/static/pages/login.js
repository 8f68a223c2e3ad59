// The login form, shown whenever the API answers 401. Posts straight to /login (a 401 there
// means a wrong password, not a lost session) and calls `done` once the cookie is set.

import { API } from "../api.js";
import { h } from "../dom.js";

export function mountLogin(root, done) {
  const error = h("p#login-error.error", { role: "alert" });
  const button = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form#login.panel",
    { onsubmit: submit },
    h("h1", {}, "camfleet"),
    h("label", {}, "User",
      h("input", { name: "username", autocomplete: "username", required: true, value: "admin" })),
    h("label", {}, "Password",
      h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    button,
    error,
  );
  root.replaceChildren(h("section.login-page", {}, form));
  form.elements.password.focus();

  async function submit(event) {
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    const body = { username: form.elements.username.value, password: form.elements.password.value };
    try {
      const response = await fetch(`${API}/login`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      if (response.ok) {
        done();
        return;
      }
      const detail = await response.json().catch(() => ({}));
      error.textContent =
        response.status === 401
          ? "Wrong user name or password."
          : `Login refused: ${typeof detail.detail === "string" ? detail.detail : response.statusText}`;
    } catch {
      error.textContent = "The controller cannot be reached.";
    }
    button.disabled = false;
    form.elements.password.select();
  }

  return { unmount() {} };
}
