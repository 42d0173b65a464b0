// Models: every local and peer model with its state, live from the feed; load, unload, unload all.

import { feedState, on, request } from "../api.js";
import { el, table } from "./dom.js";

function row(model, note) {
  const local = !model.peerID;
  const actions = local ? [
    el("button", { type: "button", onclick: () => load(model.id, note), disabled: model.state !== "stopped" },
      "Load"),
    el("button", { type: "button", onclick: () => unload(model.id, note),
                   disabled: model.state === "stopped" || model.state === "" }, "Unload"),
  ] : [];
  return el("tr", { "data-model": model.id },
    el("td", {}, el("strong", {}, model.id), model.name ? el("div", { class: "muted" }, model.name) : null),
    el("td", {}, el("span", { class: `state state-${model.state || "peer"}` }, model.state || "peer")),
    el("td", { class: "muted" }, model.description || (model.aliases || []).join(", ")),
    el("td", {}, actions));
}

async function load(id, note) {
  note.textContent = `loading ${id}…`;
  try {
    await request(`upstream/${encodeURI(id)}/`, { raw: true });
    note.textContent = "";
  } catch (error) {
    note.textContent = String(error);
  }
}

async function unload(id, note) {
  try {
    await request(`api/models/unload/${encodeURI(id)}`, { method: "POST" });
  } catch (error) {
    note.textContent = String(error);
  }
}

export function render(main) {
  const note = el("p", { class: "note", role: "status" });
  const list = el("div");
  const draw = () => {
    const models = feedState.models.filter((m) => !m.unlisted || m.state !== "stopped");
    list.replaceChildren(models.length
      ? table(["model", "state", "", ""], models.map((m) => row(m, note)))
      : el("p", { class: "muted" }, "waiting for the model list…"));
  };
  const unloadAll = el("button", { type: "button", onclick: async () => {
    try { await request("api/models/unload", { method: "POST" }); } catch (error) { note.textContent = String(error); }
  } }, "Unload all");
  main.append(el("h1", {}, "Models"), el("div", { class: "toolbar" }, unloadAll), note, list);
  draw();
  return on("modelStatus", draw);
}
