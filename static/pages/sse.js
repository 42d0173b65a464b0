// A captured Server-Sent Events body read back: its events, and the answer they stream assembled as text.
//
// Knows the streams llama-swap meters: OpenAI chat (choices[0].delta.content, and reasoning_content or
// reasoning apart), OpenAI completions (choices[0].text), Anthropic messages (content_block_delta's text,
// thinking apart) and OpenAI responses (response.output_text.delta, reasoning deltas apart).

import { sseEvent } from "../api.js";

function events(text) {
  return text.replace(/\r\n?/g, "\n").split(/\n\n+/).filter((block) => block.trim()).map(sseEvent);
}

// The [answer, reasoning] pieces one event's JSON carries (each "" when none).
function piecesOf(message) {
  const choice = (message.choices || [])[0];
  if (choice) {
    const delta = choice.delta || {};
    return [delta.content || choice.text || "", delta.reasoning_content || delta.reasoning || ""];
  }
  if (message.type === "content_block_delta") {
    const delta = message.delta || {};
    return [delta.text || "", delta.thinking || ""];
  }
  if (message.type === "response.output_text.delta") return [message.delta || "", ""];
  if (/^response\.reasoning(_summary)?_text\.delta$/.test(message.type || "")) return ["", message.delta || ""];
  return ["", ""];
}

// {text, reasoning, events}: text and reasoning are null when no event carried any.
export function assemble(body) {
  const all = events(body);
  let text = null, reasoning = null;
  for (const event of all) {
    let message;
    try { message = JSON.parse(event.data); } catch { continue; } // [DONE], a comment, a keep-alive
    if (!message || typeof message !== "object") continue;
    const [answer, thought] = piecesOf(message);
    if (answer) text = (text || "") + answer;
    if (thought) reasoning = (reasoning || "") + thought;
  }
  return { text, reasoning, events: all };
}
