// Playground: a tab for each kind of request (chat, images, speech, transcription, rerank) and a load
// test (many streamed chats at once), each offering the models whose /v1/models record declares it (the
// `capabilities` flags); a model that declares none is offered for chat and the load test only. A tab no
// model offers says how to declare one. The tab shown is kept in the URL (#/playground/<tab>) without
// drawing the page again.

import { request } from "../api.js";
import { el } from "./dom.js";
import * as chat from "./playground/chat.js";
import * as images from "./playground/images.js";
import * as speech from "./playground/speech.js";
import * as transcription from "./playground/transcription.js";
import * as rerank from "./playground/rerank.js";
import * as loadtest from "./playground/loadtest.js";
import { tabs } from "./playground/tabs.js";

const TABS = [chat, images, speech, transcription, rerank, loadtest];
// Flags that do not make a model a chat model: each tab's, and image editing (image in, image out).
const NOT_CHAT = new Set([...TABS.map((tab) => tab.flag).filter(Boolean), "image_to_image"]);

function offers(tab, record) {
  const flags = record.capabilities;
  if (tab.flag) return Boolean(flags && flags[tab.flag]);
  return !flags || Object.keys(flags).some((flag) => !NOT_CHAT.has(flag));
}

function nobody(tab) {
  return el("p", { class: "empty muted" }, `No model offers ${tab.label.toLowerCase()}. `,
    "Declare it in a model's config, e.g. ", el("code", {}, tab.hint), ".");
}

// The open tab is kept in the address (#/playground/<tab>) by this page: app.js leaves it to us.
export const ownsSubRoute = true;

export function render(main, rest) {
  const note = el("p", { class: "note", role: "alert" });
  const leaves = [];
  let left = false;
  main.append(el("h1", {}, "Playground"), note);

  request("v1/models").then((listing) => {
    if (left) return;
    const entries = TABS.map((tab) => {
      const models = listing.data.filter((record) => offers(tab, record));
      if (!models.length) return { id: tab.id, label: tab.label, panel: nobody(tab) };
      const { panel, leave } = tab.build(models);
      leaves.push(leave);
      return { id: tab.id, label: tab.label, panel };
    });
    main.append(...tabs(entries, rest[0], (id) => history.replaceState(null, "", `#/playground/${id}`)));
  }).catch((error) => { note.textContent = error.message || String(error); });

  return () => {
    left = true;
    leaves.forEach((leave) => leave());
  };
}
