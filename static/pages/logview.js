// A live log in a <pre class="log">: its last lines (kept raw, drawn in their ANSI colours), filtered by
// text, paused, cleared; and followLog, which reads a /logs/stream/… into one until its signal aborts,
// reconnecting when the stream ends or fails (a restarted server, a proxy's idle timeout).

import { pieces, request } from "../api.js";
import { AnsiRenderer, stripAnsi } from "./ansi.js";
import { el } from "./dom.js";

const KEEP = 5000; // lines
const RETRY_MS = 1000, RETRY_MAX_MS = 5000; // the wait before a reconnect, doubled after each failure

export function logView(label) {
  const pre = el("pre", { class: "log", tabindex: "0", "aria-label": label });
  let lines = []; // { raw, plain, node, note }: node is the drawn line, null when filtered out or not drawn yet
  let needle = "";
  let paused = false;
  let colours = new AnsiRenderer();

  const following = () => pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  const keepFollowing = (was) => { if (was) pre.scrollTop = pre.scrollHeight; };
  // Every line goes through the renderer, shown or not: a colour set on a hidden line still holds after it.
  // A note (the stream's own word, not the log's) is shown whatever the filter.
  const draw = (line) => {
    if (line.note) return (line.node = el("span", { class: "line muted" }, line.raw, "\n"));
    const nodes = colours.render(line.raw);
    const shown = !needle || line.plain.toLowerCase().includes(needle);
    line.node = shown ? el("span", { class: "line" }, nodes, "\n") : null;
    return line.node;
  };
  const append = (line) => {
    lines.push(line);
    if (lines.length > KEEP) lines.shift().node?.remove();
    if (paused) return;
    const was = following();
    if (draw(line)) pre.append(line.node);
    keepFollowing(was);
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
      append({ raw, plain: stripAnsi(raw), node: null, note: false });
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
    // A line of the view's own; answers a function that changes its text.
    note(text) {
      const line = { raw: text, plain: text, node: null, note: true };
      append(line);
      return (changed) => {
        line.raw = line.plain = changed;
        if (line.node) line.node.firstChild.textContent = changed;
      };
    },
  };
}

// A reconnected stream starts with the log's history again. Of the lines it sends, those repeating the
// last lines shown (`seen`, oldest first) are held back and dropped once they reach the last one; if they
// stop matching (a restarted server's history is new), everything held is shown.
function dropRepeats(seen) {
  let starts = seen.map((_, i) => i); // where in `seen` the lines held so far could have begun
  let held = [];
  return (line) => {
    if (!starts.length) return [line];
    held.push(line);
    const at = held.length - 1;
    starts = starts.filter((start) => seen[start + at] === line);
    if (starts.length && starts[0] + at === seen.length - 1) { // the longest match reached the last line seen
      starts = [];
      return [];
    }
    return starts.length ? [] : held;
  };
}

const delay = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

// A 4xx (a name the server does not know) ends it for good; anything else is retried, the gap marked.
export async function followLog(path, view, signal) {
  const seen = []; // the last lines shown, to know what a reconnected stream repeats
  let wait = RETRY_MS;
  let gap = null; // changes the text of the note saying the stream is being reconnected
  while (!signal.aborted) {
    let why = "ended";
    try {
      const response = await request(path, { raw: true, signal });
      if (response.status >= 400 && response.status < 500) {
        view.note(`log stream: ${response.status}: ${await response.text()}`);
        return;
      }
      if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
      if (gap) gap("— log stream reconnected —");
      gap = null;
      wait = RETRY_MS;
      const fresh = dropRepeats(seen.slice());
      for await (const piece of pieces(response, "\n")) {
        for (const line of fresh(piece)) {
          view.add(line);
          seen.push(line);
          if (seen.length > KEEP) seen.shift();
        }
      }
    } catch (error) {
      why = error.message || String(error);
    }
    if (signal.aborted) return;
    const text = `— log stream ${why === "ended" ? "ended" : `failed (${why})`}: reconnecting… —`;
    if (gap) gap(text); else gap = view.note(text);
    await delay(wait, signal);
    wait = Math.min(wait * 2, RETRY_MAX_MS);
  }
}
