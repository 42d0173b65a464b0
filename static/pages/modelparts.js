// What the Models page and a model's own page both show of a model: the link to its page, its state
// (with "queued" for a manual load still waiting its turn), its capability tags (and whether the list
// shows them), and its Load, Cancel and
// Unload buttons. A manual load is a GET of /upstream/<id>/, as llama-swap's UI does: the model starts when
// the router lets it, and cancelling the request takes it out of the queue.

import { feedState, request } from "../api.js";
import { el } from "./dom.js";

const CAPABILITIES = { vision: "vision", function_calling: "tools", audio_transcriptions: "transcription",
  audio_speech: "speech", image_generation: "images", image_to_image: "image edits", reranker: "rerank" };

const loads = new Map(); // model id -> AbortController of its manual load
const loadWatchers = new Set();

export function onLoads(callback) {
  loadWatchers.add(callback);
  return () => loadWatchers.delete(callback);
}

function loadsChanged() {
  loadWatchers.forEach((callback) => callback());
}

// A model id as URL path segments: each escaped ("#", "?", "%"…), its slashes kept (the server reads
// "org/model" from the segments, as llama-swap does).
export function modelPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

function modelHref(id) {
  return "#/models/" + modelPath(id);
}

export function modelLink(id, text = id) {
  return el("a", { class: "model-link", href: modelHref(id) }, text);
}

// The local model a name means (its id or one of its aliases), or undefined.
export function findModel(name) {
  return feedState.models.find((m) => m.id === name)
    || feedState.models.find((m) => (m.aliases || []).includes(name));
}

function stateOf(model) {
  if (!model) return "unknown";
  if (model.peerID) return "peer";
  return loads.has(model.id) && model.state === "stopped" ? "queued" : model.state;
}

export function stateBadge(model) {
  const state = stateOf(model);
  return el("span", { class: `state state-${state}` }, state);
}

// Whether the Models page shows the capability tags (a setting, on unless turned off: #1007's opt-in).
const TAGS = "llama-swap.models.capability-tags";
export const tagsShown = () => localStorage.getItem(TAGS) !== "off";
export const showTags = (on) => localStorage.setItem(TAGS, on ? "on" : "off");

// withContext: the context length as one more tag (where it has no place of its own).
export function capabilityTags(model, withContext = true) {
  const tags = Object.keys(model.capabilities || {}).map((name) =>
    el("span", { class: "tag", title: name }, CAPABILITIES[name] || name));
  if (withContext && model.context_length) tags.push(el("span", { class: "tag", title: "context length" }, `${model.context_length} ctx`));
  return el("span", { class: "tags" }, tags);
}

async function load(id, note) {
  const controller = new AbortController();
  loads.set(id, controller);
  loadsChanged();
  try {
    await request(`upstream/${modelPath(id)}/?_=${Date.now()}`, { raw: true, signal: controller.signal });
  } catch (error) {
    if (!controller.signal.aborted) note.textContent = `load ${id}: ${error.message || error}`;
  } finally {
    loads.delete(id);
    loadsChanged();
  }
}

async function unload(id, note) {
  try {
    await request(`api/models/unload/${modelPath(id)}`, { method: "POST" });
  } catch (error) {
    note.textContent = `unload ${id}: ${error.message || error}`;
  }
}

// note: where an error is written.
export function modelActions(model, note) {
  if (model.peerID) return null;
  const loading = loads.get(model.id);
  return el("span", { class: "actions" },
    loading
      ? el("button", { type: "button", onclick: () => loading.abort() }, "Cancel")
      : el("button", { type: "button", onclick: () => load(model.id, note), disabled: model.state !== "stopped" },
        "Load"),
    el("button", { type: "button", onclick: () => unload(model.id, note),
                   disabled: model.state === "stopped" || model.state === "shutdown" }, "Unload"));
}
