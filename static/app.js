// The app: which page is shown (by the URL's hash, or the path a bookmark or /upstream sent us to),
// the theme toggle (theme.js), the connection state of the event stream.
//
// A route is "#/<page>/<rest…>": the page module's render(main, rest) draws it and returns what to
// call when the page is left (or nothing). A page is drawn again when its rest changes
// ("#/models" → "#/models/alpha"), unless it keeps its own sub-route (exports ownsSubRoute).

import { connectFeed, onConnection } from "./api.js";
import { startProfiles } from "./profile.js";
import * as activity from "./pages/activity.js";
import * as timeline from "./pages/timeline.js";
import * as models from "./pages/models.js";
import * as logs from "./pages/logs.js";
import * as playground from "./pages/playground.js";
import * as performance from "./pages/performance.js";
import * as hardware from "./pages/hardware.js";
import * as settings from "./pages/settings.js";
import { toggleTheme } from "./theme.js";

const PAGES = { activity, timeline, models, logs, playground, performance, hardware, settings };
let current = null; // { route, leave }

function route() {
  const fromHash = location.hash.replace(/^#\/?/, "");
  const at = location.pathname.lastIndexOf("/ui/"); // the last, as index.html finds the mount
  const after = at >= 0 ? location.pathname.slice(at + 4) : "";
  const parts = (fromHash || after).split("/").filter(Boolean).map(decodeURIComponent);
  return parts.length && parts[0] in PAGES ? parts : ["activity"];
}

function show() {
  const [name, ...rest] = route();
  // A page that keeps its own sub-route in the address (the playground's tab) is not drawn again for it.
  const key = PAGES[name].ownsSubRoute ? name : [name, ...rest].join("/");
  if (current && current.key === key) return;
  if (current && current.leave) current.leave();
  const main = document.getElementById("page");
  main.replaceChildren();
  document.querySelectorAll("nav a").forEach((a) => {
    const active = a.dataset.page === name;
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  current = { key, leave: PAGES[name].render(main, rest) };
  document.title = `llama-swap · ${[name, ...rest].join(" · ")}`;
}

document.getElementById("theme").addEventListener("click", toggleTheme);

onConnection((connected) => {
  const badge = document.getElementById("connection");
  badge.textContent = connected ? "live" : "reconnecting…";
  badge.classList.toggle("up", connected);
});

startProfiles();
window.addEventListener("hashchange", () => {
  show();
  document.getElementById("page").focus({ preventScroll: true }); // the next Tab goes into the page
});
show();
connectFeed();
performance.probe();
