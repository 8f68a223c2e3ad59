// The single-page app: hash routes, the login gate, the header (nav, alarms, logout).
// A page is a function mount(root, arg, params) returning {unmount(), update?(params)}.

import { onUnauthorized, post } from "./api.js";
import { setText } from "./dom.js";
import { mountCamera } from "./pages/camera.js";
import { mountEvents } from "./pages/events.js";
import { mountFleet } from "./pages/fleet.js";
import { mountGrid } from "./pages/grid.js";
import { mountLogin } from "./pages/login.js";
import { reportError } from "./status.js";
import * as updates from "./updates.js";

const PAGES = { grid: mountGrid, camera: mountCamera, events: mountEvents, fleet: mountFleet };
const root = document.getElementById("app");
let current = null; // {name, arg, page}
let loggedOut = false;

/** "#/camera/cam1?at=123" -> {name: "camera", arg: "cam1", params}. */
function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  const known = Object.hasOwn(PAGES, name);
  return {
    name: known ? name : "grid",
    arg: known ? decodeURIComponent(rest.join("/")) : "",
    params: new URLSearchParams(query),
  };
}

function leave() {
  if (current) current.page.unmount();
  current = null;
  root.replaceChildren();
}

function render() {
  if (loggedOut) return;
  const next = route();
  if (current && current.name === next.name && current.arg === next.arg && current.page.update) {
    current.page.update(next.params);
    return;
  }
  leave();
  document.body.dataset.page = next.name;
  for (const link of document.querySelectorAll("nav a")) {
    const active = link.getAttribute("href") === `#/${next.name}`;
    link.toggleAttribute("aria-current", active);
  }
  current = { ...next, page: PAGES[next.name](root, next.arg, next.params) };
}

function showLogin() {
  if (loggedOut) return;
  loggedOut = true;
  updates.stop();
  leave();
  document.body.dataset.page = "login";
  current = {
    name: "login",
    arg: "",
    page: mountLogin(root, () => {
      loggedOut = false;
      current = null;
      updates.start();
      render();
    }),
  };
}

function showAlarms(fleet) {
  const link = document.getElementById("alarm-count");
  const count = (fleet.cameras || []).filter((c) => c.alarm).length;
  link.hidden = count === 0;
  setText(link, count === 1 ? "1 camera in alarm" : `${count} cameras in alarm`);
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await post("/logout");
  } catch (err) {
    reportError(err, "Logging out");
  }
  showLogin();
});

onUnauthorized(showLogin);
updates.on("fleet", showAlarms);
window.addEventListener("hashchange", render);
updates.start();
render();
