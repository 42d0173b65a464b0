// The app: which page is shown (by the URL's hash, or the path a bookmark or /upstream sent us to),
// the theme, the connection state of the event stream.

import { connectFeed, onConnection } from "./api.js";
import * as activity from "./pages/activity.js";
import * as models from "./pages/models.js";
import * as logs from "./pages/logs.js";
import * as playground from "./pages/playground.js";

const PAGES = { activity, models, logs, playground };
const THEME = "llama-swap.theme";
let current = null; // { name, leave }

function pageName() {
  const fromHash = location.hash.replace(/^#\/?/, "").split("/")[0];
  if (fromHash in PAGES) return fromHash;
  const after = location.pathname.split("/ui/")[1] || "";
  const fromPath = after.split("/")[0];
  return fromPath in PAGES ? fromPath : "activity";
}

function show() {
  const name = pageName();
  if (current && current.name === name) return;
  if (current && current.leave) current.leave();
  const main = document.getElementById("page");
  main.replaceChildren();
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  current = { name, leave: PAGES[name].render(main) };
  document.title = `llama-swap · ${name}`;
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem(THEME, theme);
}

const preferred = localStorage.getItem(THEME)
  || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
applyTheme(preferred);
document.getElementById("theme").addEventListener("click", () =>
  applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));

onConnection((connected) => {
  const badge = document.getElementById("connection");
  badge.textContent = connected ? "live" : "reconnecting…";
  badge.classList.toggle("up", connected);
});

window.addEventListener("hashchange", show);
show();
connectFeed();
