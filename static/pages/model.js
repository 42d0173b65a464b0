// One model's page ("#/models/<id>"): its details and state live from the feed, Load/Unload, its recent
// activity (/api/metrics/activity?model=<id>, refreshed as requests end) and its own live log
// (/logs/stream/<id>, in colour), which stops when the page is left.

import { feedState, on, request, throttled } from "../api.js";
import { clock, el, ms, rate, table } from "./dom.js";
import { followLog, logView } from "./logview.js";
import { capabilityTags, modelActions, modelPath, onLoads, stateBadge } from "./modelparts.js";

const RECENT = 20;
const REFRESH_MS = 1500; // requests finishing faster than this are fetched together

function details(model, note) {
  const rows = [
    ["state", el("span", {}, stateBadge(model), " ", modelActions(model, note))],
    ["name", model.name], ["description", model.description],
    ["aliases", (model.aliases || []).join(", ")],
    ["capabilities", Object.keys(model.capabilities || {}).length ? capabilityTags(model, false) : null],
    ["context length", model.context_length], ["peer", model.peerID], ["unlisted", model.unlisted ? "yes" : null],
  ].filter(([, value]) => value);
  return el("dl", { class: "details" }, rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function activityTable(records) {
  if (!records.length) return el("p", { class: "muted" }, "no requests yet");
  return table(["time", "path", "status", "tokens in / out", "prompt", "generation", "duration"],
    records.map((r) => el("tr", { "data-id": r.id },
      el("td", {}, clock(r.timestamp)), el("td", {}, r.req_path),
      el("td", {}, r.resp_status_code), el("td", {}, `${r.tokens.input_tokens} / ${r.tokens.output_tokens}`),
      el("td", {}, rate(r.tokens.prompt_per_second)), el("td", {}, rate(r.tokens.tokens_per_second)),
      el("td", {}, ms(r.duration_ms)))));
}

export function render(main, id) {
  const note = el("p", { class: "note", role: "status" });
  const about = el("div", {}, el("p", { class: "muted" }, "waiting for the model list…"));
  const activity = el("div");
  const log = logView(`${id}'s log`);
  const logSection = el("section", { "aria-label": "log" }, el("h2", {}, "Log"), log.element);
  const leaving = new AbortController();
  let following = false;

  const drawDetails = () => {
    const model = feedState.models.find((m) => m.id === id);
    if (!model) {
      if (feedState.models.length) about.replaceChildren(el("p", { class: "note" }, `no model ${id} in this config`));
      return;
    }
    about.replaceChildren(details(model, note));
    logSection.hidden = Boolean(model.peerID); // a peer's model logs on its peer
    if (!model.peerID && !following) {
      following = true;
      followLog(`logs/stream/${modelPath(id)}`, log, leaving.signal);
    }
  };
  const names = () => [id, ...(feedState.models.find((m) => m.id === id)?.aliases || [])];
  const fetchActivity = async () => {
    try {
      const query = new URLSearchParams({ limit: RECENT }); // recorded under whichever name was asked for
      names().forEach((name) => query.append("model", name));
      activity.replaceChildren(activityTable((await request(`api/metrics/activity?${query}`, { signal: leaving.signal })).data));
    } catch (error) {
      if (!leaving.signal.aborted) activity.replaceChildren(el("p", { class: "note" }, String(error)));
    }
  };

  main.append(el("p", {}, el("a", { class: "model-link", href: "#/models" }, "← Models")), el("h1", {}, id), note, about,
    el("section", { "aria-label": "activity" }, el("h2", {}, "Recent activity"), activity), logSection);
  drawDetails();
  fetchActivity();
  const refresh = throttled(fetchActivity, REFRESH_MS);
  const stops = [on("modelStatus", drawDetails), onLoads(drawDetails), on("activity", (message) => {
    if (!message.model || names().includes(message.model)) refresh();
  })];
  return () => { stops.forEach((stop) => stop()); refresh.cancel(); leaving.abort(); };
}
