// The Chat tab: a streamed, multi-turn conversation with a system prompt. The loading progress of a
// swap shows as it comes (llama-swap's sendLoadingState arrives as reasoning text, in .msg.thinking);
// Stop ends the answer where it stands and keeps it; Clear forgets the conversation. Everything a
// model or a user wrote is shown as text, never as HTML.

import { el, field } from "../dom.js";
import { chunks, modelPicker, post, runner, waitingFor } from "./common.js";

export const id = "chat";
export const label = "Chat";
export const flag = null; // offered by every model not only for images, speech, transcription or rerank
export const hint = "capabilities: {in: [text], out: [text]}";

// Streams one answer into `thinking` (reasoning, loading progress) and `answer` (the content).
async function stream(response, thinking, answer) {
  for await (const chunk of chunks(response)) {
    const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
    if (delta.reasoning_content) thinking.textContent += delta.reasoning_content;
    if (delta.content) answer.textContent += delta.content;
  }
}

export function build(models) {
  const model = modelPicker(models);
  const system = el("textarea", { rows: "2", placeholder: "Optional: how the model should answer" });
  const history = el("div", { class: "chat", "aria-live": "polite" });
  const prompt = el("textarea", { rows: "3", placeholder: "Ask something…", "aria-label": "message" });
  const send = el("button", { type: "submit" }, "Send");
  const clear = el("button", { type: "button" }, "Clear");
  const { stop, status, note, run, abort } = runner(send);
  let messages = []; // the conversation so far, as the model is sent it (without the system prompt)

  const ask = (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || send.disabled) return;
    prompt.value = "";
    const asked = { role: "user", content: text };
    messages.push(asked);
    const turn = messages;
    const thinking = el("div", { class: "msg thinking muted" });
    const answer = el("div", { class: "msg assistant" });
    const question = el("div", { class: "msg user" }, text);
    history.append(question, thinking, answer);
    const instructions = system.value.trim();
    const sent = instructions ? [{ role: "system", content: instructions }, ...turn] : [...turn];
    run(async (signal) => {
      try {
        const response = await post("v1/chat/completions", { model: model.value, messages: sent, stream: true }, signal);
        status.textContent = ""; // answering, or showing the loading progress
        await stream(response, thinking, answer);
      } finally {
        if (answer.textContent) {
          turn.push({ role: "assistant", content: answer.textContent });
        } else { // not sent again: two user turns in a row are refused by templates that want them to alternate
          turn.splice(turn.indexOf(asked), 1);
          answer.remove();
          question.classList.add("failed");
          question.append(el("span", { class: "muted" }, " (no answer: left out of the conversation)"));
        }
        if (!thinking.textContent) thinking.remove();
      }
    }, waitingFor(model.value));
  };

  clear.addEventListener("click", () => {
    abort();
    messages = [];
    history.replaceChildren();
    note.textContent = "";
  });
  prompt.addEventListener("keydown", (event) => { // Enter sends, Shift+Enter is a new line
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) ask(event);
  });
  const form = el("form", { onsubmit: ask }, prompt, el("div", { class: "toolbar" }, model, send, stop, clear));
  return { panel: [field("system prompt", system), history, status, note, form], leave: abort };
}
