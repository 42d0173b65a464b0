// Playground: chat with any listed model, streamed; the loading progress of a swap shows as it comes
// (llama-swap's loading state arrives as reasoning text); Stop ends the answer where it stands.

import { pieces, request } from "../api.js";
import { el } from "./dom.js";

async function listed() {
  const list = await request("v1/models");
  return list.data.map((m) => m.id);
}

async function* events(response) {
  for await (const raw of pieces(response, "\n")) {
    const line = raw.trim();
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (data === "[DONE]") return;
    try { yield JSON.parse(data); } catch { /* not JSON: skipped */ }
  }
}

export function render(main) {
  const model = el("select", { "aria-label": "model" });
  const history = el("div", { class: "chat", "aria-live": "polite" });
  const prompt = el("textarea", { rows: "3", placeholder: "Ask something…", "aria-label": "message" });
  const send = el("button", { type: "submit" }, "Send");
  const stop = el("button", { type: "button", disabled: true }, "Stop");
  const note = el("p", { class: "note", role: "status" });
  const messages = [];
  let controller = null;

  listed().then((ids) => model.replaceChildren(...ids.map((id) => el("option", { value: id }, id))))
    .catch((error) => { note.textContent = String(error); });

  const ask = async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    prompt.value = "";
    messages.push({ role: "user", content: text });
    history.append(el("div", { class: "msg user" }, text));
    const thinking = el("div", { class: "msg thinking muted" });
    const answer = el("div", { class: "msg assistant" });
    history.append(thinking, answer);
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    note.textContent = "";
    try {
      const response = await request("v1/chat/completions", {
        method: "POST", raw: true, signal: controller.signal,
        body: { model: model.value, messages, stream: true } });
      if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
      for await (const chunk of events(response)) {
        if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
        const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
        if (delta.reasoning_content) thinking.textContent += delta.reasoning_content;
        if (delta.content) answer.textContent += delta.content;
      }
    } catch (error) {
      if (!controller.signal.aborted) note.textContent = String(error);
    } finally {
      if (answer.textContent) messages.push({ role: "assistant", content: answer.textContent });
      if (!thinking.textContent) thinking.remove();
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  };

  stop.addEventListener("click", () => controller && controller.abort());
  const form = el("form", { onsubmit: ask }, prompt, el("div", { class: "toolbar" }, model, send, stop));
  main.append(el("h1", {}, "Playground"), history, note, form);
  return () => controller && controller.abort();
}
