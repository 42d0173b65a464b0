// Logs: the proxy's, the upstreams' (all models, or one model's), or the combined log llama-swap writes to
// stdout; live from /logs/stream/…, in their ANSI colours; filter by model and by text, pause, clear.
// "#/logs/<model>" opens on that model's log.

import { feedState, on } from "../api.js";
import { el } from "./dom.js";
import { followLog, logView } from "./logview.js";
import { modelPath } from "./modelparts.js";

const SOURCES = [["proxy", "proxy"], ["upstream", "upstream (every model)"], ["", "combined (as on stdout)"]];

const localModels = () => feedState.models.filter((m) => !m.peerID).map((m) => m.id);

function sourceOptions() {
  const local = localModels();
  const fixed = SOURCES.map(([value, label]) => el("option", { value }, label));
  return local.length
    ? [...fixed, el("optgroup", { label: "one model's upstream" }, local.map((id) => el("option", { value: id }, id)))]
    : fixed;
}

export function render(main, rest) {
  const view = logView("log");
  const source = el("select", { "aria-label": "which log" });
  let chosen = rest.length ? rest.join("/") : "proxy";
  const filter = el("input", { type: "search", placeholder: "filter", "aria-label": "filter lines" });
  const pause = el("button", { type: "button", "aria-pressed": "false" }, "Pause");
  const clear = el("button", { type: "button" }, "Clear");
  let controller = null;
  let listed = null; // the model ids the select offers

  const follow = () => {
    if (controller) controller.abort();
    controller = new AbortController();
    view.clear();
    followLog(chosen ? `logs/stream/${modelPath(chosen)}` : "logs/stream", view, controller.signal);
  };
  const refreshSources = () => { // the model list may arrive (or change) after the page is drawn
    if (listed === localModels().join("\n")) return;
    listed = localModels().join("\n");
    source.replaceChildren(...sourceOptions());
    if (![...source.options].some((o) => o.value === chosen)) source.append(el("option", { value: chosen }, chosen));
    source.value = chosen;
  };

  source.addEventListener("change", () => { chosen = source.value; follow(); });
  filter.addEventListener("input", () => view.filter(filter.value));
  pause.addEventListener("click", () => {
    const paused = pause.getAttribute("aria-pressed") !== "true";
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    view.pause(paused);
  });
  clear.addEventListener("click", () => view.clear());
  main.append(el("h1", {}, "Logs"), el("div", { class: "toolbar" }, source, filter, pause, clear), view.element);
  refreshSources();
  follow();
  const stopWatching = on("modelStatus", refreshSources);
  return () => { stopWatching(); controller.abort(); };
}
