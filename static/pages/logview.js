// A live log in a <pre class="log">: its last lines (kept raw, drawn in their ANSI colours), filtered by
// text, paused, cleared; and followLog, which reads a /logs/stream/… into one (again whenever it drops)
// until its signal aborts.

import { pieces, request } from "../api.js";
import { AnsiRenderer, stripAnsi } from "./ansi.js";
import { el } from "./dom.js";

const KEEP = 5000; // lines
const RETRY_MS = 1000;

export function logView(label) {
  const pre = el("pre", { class: "log", tabindex: "0", "aria-label": label });
  let lines = []; // { raw, plain, node }: node is the drawn line, null when filtered out or not drawn yet
  let needle = "";
  let paused = false;
  let colours = new AnsiRenderer();

  const following = () => pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const keepFollowing = (was) => { if (was) pre.scrollTop = pre.scrollHeight; };
  // Every line goes through the renderer, shown or not: a colour set on a hidden line still holds after it.
  const draw = (line) => {
    const nodes = colours.render(line.raw);
    const shown = !needle || line.plain.toLowerCase().includes(needle);
    line.node = shown ? el("span", { class: "line" }, nodes, "\n") : null;
    return line.node;
  };
  const redraw = () => {
    const was = following();
    colours = new AnsiRenderer();
    pre.replaceChildren(...lines.map(draw).filter(Boolean));
    keepFollowing(was);
  };

  return {
    element: pre,
    add(raw) {
      const line = { raw, plain: stripAnsi(raw), node: null };
      lines.push(line);
      if (lines.length > KEEP) lines.shift().node?.remove();
      if (paused) return;
      const was = following();
      if (draw(line)) pre.append(line.node);
      keepFollowing(was);
    },
    filter(text) {
      needle = text.toLowerCase();
      if (!paused) redraw();
    },
    pause(on) {
      paused = on;
      if (!on) redraw();
    },
    clear() {
      lines = [];
      redraw();
    },
    note(text) {
      pre.append(el("span", { class: "line muted" }, text, "\n"));
    },
  };
}

// Reads `path` into `view` until `signal` aborts. A stream that ends or breaks (the server restarted, a
// proxy dropped it) is read again a moment later, the view drawn anew from the backlog the server sends
// first; a refusal (an unknown log) is shown and not asked again.
export async function followLog(path, view, signal) {
  let told = false; // the view says the stream is down: once an outage, not once a retry
  const down = (why) => {
    if (!told && !signal.aborted) view.note(`log stream ${why}: reconnecting…`);
    told = true;
  };
  while (!signal.aborted) {
    try {
      const response = await request(path, { raw: true, signal });
      if (!response.ok) {
        view.note(`log stream: ${response.status}: ${await response.text()}`);
        return;
      }
      view.clear();
      told = false;
      for await (const line of pieces(response, "\n")) view.add(line);
      down("ended");
    } catch (error) {
      down(`failed (${error.message || error})`);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, RETRY_MS);
      signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }
}
