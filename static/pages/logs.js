// Logs: the proxy's, the upstreams' or one model's, live from /logs/stream; filter, pause, clear.

import { feedState, request } from "../api.js";
import { el } from "./dom.js";

const KEEP = 200_000; // characters shown at most
const ANSI = /\x1b\[[0-9;]*m/g; // colour codes are dropped for now

export function render(main) {
  const source = el("select", { "aria-label": "which log" },
    el("option", { value: "" }, "everything"), el("option", { value: "proxy" }, "proxy"),
    el("option", { value: "upstream" }, "upstream"),
    feedState.models.filter((m) => !m.peerID).map((m) => el("option", { value: m.id }, m.id)));
  const filter = el("input", { type: "search", placeholder: "filter", "aria-label": "filter lines" });
  const pause = el("button", { type: "button", "aria-pressed": "false" }, "Pause");
  const clear = el("button", { type: "button" }, "Clear");
  const view = el("pre", { class: "log", tabindex: "0" });
  let text = "";
  let paused = false;
  let controller = null;

  const draw = () => {
    if (paused) return;
    const needle = filter.value.toLowerCase();
    const lines = needle ? text.split("\n").filter((l) => l.toLowerCase().includes(needle)).join("\n") : text;
    const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
    view.textContent = lines;
    if (atBottom) view.scrollTop = view.scrollHeight;
  };
  const follow = async () => {
    if (controller) controller.abort();
    controller = new AbortController();
    text = "";
    draw();
    const path = source.value ? `logs/stream/${source.value}` : "logs/stream";
    try {
      const response = await request(path, { raw: true });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      controller.signal.addEventListener("abort", () => reader.cancel());
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text = (text + value.replace(ANSI, "")).slice(-KEEP);
        draw();
      }
    } catch (error) {
      if (!controller.signal.aborted) view.textContent = String(error);
    }
  };

  source.addEventListener("change", follow);
  filter.addEventListener("input", draw);
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    draw();
  });
  clear.addEventListener("click", () => { text = ""; draw(); });
  main.append(el("h1", {}, "Logs"), el("div", { class: "toolbar" }, source, filter, pause, clear), view);
  follow();
  return () => controller && controller.abort();
}
