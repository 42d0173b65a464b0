// The capture of one activity record (`/api/captures/<id>`), shown in a dialog: request and response,
// headers and bodies, JSON pretty-printed, a streamed (SSE) answer assembled into its text with the raw
// events below it. The response's text is the `pre.capture`. Escape, the Close button or a click
// outside closes it.

import { request } from "../api.js";
import { bytes, el, table } from "./dom.js";
import { assemble } from "./sse.js";

function decoded(base64) {
  const raw = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(raw), size: raw.length };
  } catch {
    return { text: null, size: raw.length };
  }
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

// A header's value from a {name: value} map as the server sends them (captures, in-flight entries), any case.
export function headerValue(headers, name) {
  const key = Object.keys(headers || {}).find((k) => k.toLowerCase() === name.toLowerCase());
  return key ? headers[key] : "";
}

function headersPart(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return null;
  return el("details", { class: "headers" }, el("summary", {}, `headers (${entries.length})`),
    table(["name", "value"], entries.map(([name, value]) => el("tr", {}, el("td", {}, name), el("td", {}, value)))));
}

// A body as the reader wants it: text (pretty JSON), an SSE stream assembled, or a word on why not.
function bodyPart(base64, className, streamed) {
  if (base64 === null || base64 === undefined) return el("p", { class: "muted" }, "body not captured");
  const { text, size } = decoded(base64);
  if (text === null) return el("p", { class: "muted" }, `${bytes(size)} of binary data`);
  if (!text) return el("p", { class: "muted" }, "empty body");
  if (!streamed) return el("pre", { class: className }, pretty(text));
  const stream = assemble(text);
  return [
    stream.reasoning === null ? null
      : el("div", {}, el("h4", {}, "reasoning"), el("pre", { class: "reasoning" }, stream.reasoning)),
    stream.text === null ? null : el("h4", {}, "assembled answer"),
    el("pre", { class: className }, stream.text === null ? text : stream.text),
    el("details", { class: "raw" }, el("summary", {}, `${stream.events.length} raw events`),
      el("pre", {}, stream.events.map((event) => event.raw).join("\n\n"))),
  ];
}

function view(record, capture) {
  const type = headerValue(capture.resp_headers, "content-type") || record.resp_content_type || "";
  return [
    el("section", {}, el("h3", {}, "Request"), headersPart(capture.req_headers),
      bodyPart(capture.req_body, "request-body", false)),
    el("section", {}, el("h3", {}, "Response ", el("span", { class: "muted" }, type)),
      headersPart(capture.resp_headers), bodyPart(capture.resp_body, "capture", type.includes("text/event-stream"))),
  ];
}

// The dialog, added to the page; open(record) shows that record's capture, remove() takes it away.
export function captureDialog() {
  const title = el("h2", { id: "capture-title" });
  const status = el("p", { class: "muted" });
  const content = el("div", { class: "capture-content" });
  const dialog = el("dialog", { class: "capture-view", "aria-labelledby": "capture-title" },
    el("header", {}, title, el("button", { type: "button", onclick: () => dialog.close() }, "Close")),
    status, content);
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  document.body.append(dialog);

  const open = async (record) => {
    title.textContent = `#${record.id} · ${record.model} · ${record.req_path}`;
    status.textContent = `${record.resp_status_code} · ${new Date(record.timestamp).toLocaleString()}`
      + (record.error_msg ? ` · ${record.error_msg}` : "");
    content.replaceChildren(el("p", { class: "muted" }, "loading…"));
    if (!dialog.open) dialog.showModal();
    try {
      content.replaceChildren(...view(record, await request(`api/captures/${record.id}`)).flat());
    } catch (error) {
      content.replaceChildren(el("p", { class: "note" }, String(error)));
    }
  };
  return { open, remove: () => dialog.remove() };
}
