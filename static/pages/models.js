// Models: every local model (with its aliases and, unless Settings turns them off, its capability tags),
// selector (with its targets), profile (with its pins) and peer model, each with its state live from the
// feed; load, unload, unload all. "#/models/<id>" is one model's own page (model.js).

import { feedState, on, request } from "../api.js";
import { onProfiles, profileState } from "../profile.js";
import { el, keepingFocus, table } from "./dom.js";
import * as modelPage from "./model.js";
import { capabilityTags, findModel, modelActions, modelLink, onLoads, stateBadge, tagsShown } from "./modelparts.js";

function modelRow(model, note, tags) {
  const aliases = model.aliases || [];
  return el("tr", { "data-model": model.id, class: model.unlisted ? "unlisted" : null },
    el("td", {},
      el("strong", {}, modelLink(model.id)), model.unlisted ? el("span", { class: "tag" }, "unlisted") : null,
      model.name ? el("div", {}, model.name) : null,
      model.description ? el("div", { class: "muted" }, model.description) : null,
      aliases.length ? el("div", { class: "muted aliases" }, "aliases: ",
        el("span", { class: "tags" }, aliases.map((alias) => el("span", { class: "tag" }, alias)))) : null),
    el("td", {}, stateBadge(model)),
    el("td", {}, modelActions(model, note)),
    tags ? el("td", {}, capabilityTags(model)) : null);
}

// A name a selector or a pin points at, with the state of the local model it means.
function target(name) {
  const model = findModel(name);
  return el("span", { class: "target" }, model ? modelLink(model.id, name) : name, " ", model ? stateBadge(model) : null);
}

function selectorRow(selector) {
  const about = selector.meta.llamaswap;
  return el("tr", { "data-selector": selector.id },
    el("td", {}, el("strong", {}, selector.id), selector.name ? el("div", {}, selector.name) : null,
      selector.description ? el("div", { class: "muted" }, selector.description) : null),
    el("td", {}, el("span", { class: "tag" }, about.strategy),
      about.spillover ? el("span", { class: "tag" }, `spillover ${about.spillover}`) : null),
    el("td", {}, el("span", { class: "targets" }, about.targets.map(target))));
}

function profileRow(profile, active) {
  const pins = Object.entries(profile.pins);
  return el("tr", { "data-profile": profile.name, class: active ? "active" : null },
    el("td", {}, el("strong", {}, profile.name), active ? el("span", { class: "tag tag-on" }, "active") : null,
      profile.description ? el("div", { class: "muted" }, profile.description) : null),
    el("td", {}, el("ul", { class: "pins" }, pins.map(([pin, to]) =>
      el("li", { "data-pin": pin }, el("strong", {}, pin), " → ", to === null ? el("span", { class: "muted" }, "nothing") : target(to))))));
}

function peerRows(models) {
  return models.map((model) => el("tr", { "data-model": model.id },
    el("td", {}, el("strong", {}, modelLink(model.id))), el("td", { class: "muted" }, model.peerID),
    el("td", {}, stateBadge(model))));
}

function section(title, count, content) {
  return count ? el("section", { "aria-label": title }, el("h2", {}, title, " ", el("span", { class: "muted" }, `(${count})`)), content) : null;
}

function listing(main) {
  const note = el("p", { class: "note", role: "status" });
  const showUnlisted = el("input", { type: "checkbox", id: "show-unlisted" });
  const body = el("div");
  let selectors = [];

  const draw = () => keepingFocus(body, () => {
    const local = feedState.models.filter((m) => !m.peerID && (showUnlisted.checked || !m.unlisted || m.state !== "stopped"));
    const peers = feedState.models.filter((m) => m.peerID);
    const { profiles, active } = profileState;
    const tags = tagsShown();
    body.replaceChildren(...[
      feedState.models.length
        ? table(["model", "state", "", ...(tags ? ["capabilities"] : [])], local.map((m) => modelRow(m, note, tags)))
        : el("p", { class: "muted" }, "waiting for the model list…"),
      section("Profiles", profiles.length, table(["profile", "pins"], profiles.map((p) => profileRow(p, p.name === active)))),
      section("Selectors", selectors.length, table(["selector", "strategy", "targets"], selectors.map(selectorRow))),
      section("Peer models", peers.length, table(["model", "peer", ""], peerRows(peers))),
    ].filter(Boolean));
  });
  const fetchSelectors = async () => { // only a config reload changes them, and it sends a profileChanged
    try {
      const listed = (await request("v1/models")).data;
      selectors = listed.filter((record) => record.meta?.llamaswap?.type === "selector");
      draw();
    } catch (error) {
      note.textContent = `selectors: ${error.message || error}`;
    }
  };
  const unloadAll = el("button", { type: "button", onclick: async () => {
    try { await request("api/models/unload", { method: "POST" }); } catch (error) { note.textContent = String(error); }
  } }, "Unload all");
  showUnlisted.addEventListener("change", draw);
  main.append(el("h1", {}, "Models"),
    el("div", { class: "toolbar" }, unloadAll, el("label", {}, showUnlisted, " show unlisted")), note, body);
  draw();
  fetchSelectors();
  const stops = [on("modelStatus", draw), on("profileChanged", fetchSelectors), onProfiles(draw), onLoads(draw)];
  return () => stops.forEach((stop) => stop());
}

export function render(main, rest) {
  return rest.length ? modelPage.render(main, rest.join("/")) : listing(main);
}
