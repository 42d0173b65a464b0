// Swap timeline: for the last hour, one lane per model (starting, ready, stopping), the swaps with the
// request that caused each, and the queue depth above them, so a user can see why a request waited.
//
// The history comes from /api/timeline (again after the event stream reconnects: what happened
// meanwhile was not told), then each entry the feed's "timeline" messages carry is added to it (a swap
// comes twice: when it begins and when it ends); what is older than an hour is folded into the
// starting values, as the server does. Time is the server's: the browser's clock may be off, so "now"
// is the browser's clock moved by the difference seen when the history was fetched. The chart is an
// SVG drawn again every two seconds, or soon after news; the table of swaps under it says the same in
// words.

import { feedState, on, onConnection, request } from "../api.js";
import { clock, el, ms, svg, table } from "./dom.js";

const WINDOWS = [["fit", 0], ["5 min", 300], ["15 min", 900], ["1 hour", 3600]]; // 0: from the first entry to now
const LANE = 26, QUEUE = 56, AXIS = 18, LABEL = 110; // px
const HOUR = 3600 * 1000;
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800].map((s) => s * 1000); // tick spacings
const IDLE = new Set(["stopped", "shutdown"]); // states a lane draws nothing for

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

function causeText(cause) {
  if (!cause) return "–";
  if (cause.by === "preload") return "preload at startup";
  if (cause.by === "request") {
    return `request ${cause.id}: ${cause.method} ${cause.path}` + (cause.client ? ` from ${cause.client}` : "");
  }
  return JSON.stringify(cause);
}

// ------------------------------------------------------------------------------------ the history

class History {
  constructor(doc) {
    this.skew = Date.parse(doc.until) - Date.now(); // the server's clock minus the browser's
    this.initial = { ...doc.initial.states };
    this.initialQueue = doc.initial.queue.waiting;
    this.states = doc.states.map((s) => ({ ...s, t: Date.parse(s.at) }));
    this.swaps = new Map(doc.swaps.map((s) => [s.id, s]));
    this.queue = doc.queue.map((q) => ({ ...q, t: Date.parse(q.at) }));
  }

  now() {
    return Date.now() + this.skew;
  }

  // Fold what is older than an hour into the starting values.
  prune() {
    const since = this.now() - HOUR;
    while (this.states.length && this.states[0].t < since) {
      const gone = this.states.shift();
      this.initial[gone.model] = gone.state;
    }
    while (this.queue.length && this.queue[0].t < since) this.initialQueue = this.queue.shift().waiting;
    for (const [id, swap] of this.swaps) {
      if (swap.ended && Date.parse(swap.ended) < since) this.swaps.delete(id);
    }
  }

  add({ kind, entry }) {
    if (kind === "state") this.states.push({ ...entry, t: Date.parse(entry.at) });
    else if (kind === "swap") this.swaps.set(entry.id, entry);
    else if (kind === "queue") this.queue.push({ ...entry, t: Date.parse(entry.at) });
  }

  // "fit": from a little before the oldest entry to now, within 10 s and an hour.
  fitted() {
    let oldest = Infinity;
    for (const state of this.states) oldest = Math.min(oldest, state.t);
    for (const swap of this.swaps.values()) oldest = Math.min(oldest, Date.parse(swap.began));
    if (oldest === Infinity) return 3600;
    return Math.min(3600, Math.max(10, ((this.now() - oldest) / 1000) * 1.15));
  }

  models() {
    const local = feedState.models.filter((m) => !m.peerID).map((m) => m.id);
    const seen = [...Object.keys(this.initial), ...this.states.map((s) => s.model)];
    return [...new Set([...local, ...seen])].sort();
  }

  // A model's states as [from, to, state] spans between `since` and `until` (idle ones left out).
  spans(model, since, until) {
    let state = this.initial[model] || "stopped", from = since;
    const spans = [];
    for (const entry of this.states) {
      if (entry.model !== model) continue;
      if (entry.t > since && !IDLE.has(state)) spans.push([from, entry.t, state]);
      state = entry.state;
      from = Math.max(entry.t, since);
    }
    if (!IDLE.has(state)) spans.push([from, until, state]);
    return spans;
  }

  // The queue depth as a step line: [t, waiting] points from `since` to `until`.
  depth(since, until) {
    let waiting = this.initialQueue;
    const later = [];
    for (const q of this.queue) {
      if (q.t <= since) waiting = q.waiting; else later.push(q);
    }
    const points = [[since, waiting]];
    for (const q of later) {
      points.push([q.t, waiting], [q.t, q.waiting]);
      waiting = q.waiting;
    }
    points.push([until, waiting]);
    return points;
  }
}

// ------------------------------------------------------------------------------------ the chart

function chart(history, seconds, width) {
  const until = history.now(), since = until - (seconds || history.fitted()) * 1000;
  const models = history.models();
  const plot = Math.max(120, width - LABEL - 8);
  const x = (t) => LABEL + ((Math.max(since, Math.min(until, t)) - since) / (until - since)) * plot;
  const height = AXIS + QUEUE + models.length * LANE + 4;
  const root = svg("svg", { class: "timeline", width, height, viewBox: `0 0 ${width} ${height}`,
                            role: "img", "aria-label": summary(history, models, since) });

  // The time axis: round times, as many as there is room for their labels, and "now" at the right.
  const room = Math.max(1, Math.floor(plot / 110));
  const step = STEPS.find((s) => (until - since) / s <= room) || STEPS[STEPS.length - 1];
  for (let t = Math.ceil(since / step) * step; t < until; t += step) {
    if (x(until) - x(t) < 60) break; // leave "now" its room
    root.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: AXIS - 4, y2: height }),
      svg("text", { class: "tick", x: x(t), y: AXIS - 6, "text-anchor": "middle" }, clock(t)));
  }
  root.append(svg("text", { class: "tick", x: x(until), y: AXIS - 6, "text-anchor": "end" }, "now"));

  // The queue depth above the lanes.
  const depth = history.depth(since, until);
  const peak = Math.max(1, ...depth.map(([, w]) => w));
  const y = (w) => AXIS + QUEUE - 6 - (w / peak) * (QUEUE - 14);
  root.append(svg("text", { class: "label", x: 4, y: AXIS + QUEUE / 2 }, "waiting"),
    svg("text", { class: "tick peak", x: LABEL - 6, y: y(peak) + 4, "text-anchor": "end" }, String(peak)),
    titled(svg("path", { class: "queue", d: "M" + depth.map(([t, w]) => `${x(t).toFixed(1)},${y(w).toFixed(1)}`).join("L") }),
      `requests waiting for a grant; at most ${peak} in this window`));

  // One lane per model.
  models.forEach((model, i) => {
    const top = AXIS + QUEUE + i * LANE;
    const lane = svg("g", { class: "lane", "data-model": model });
    lane.append(svg("text", { class: "label", x: 4, y: top + LANE / 2 + 4 }, model.length > 15 ? model.slice(0, 14) + "…" : model),
      svg("line", { class: "lane-line", x1: LABEL, x2: LABEL + plot, y1: top + LANE - 1, y2: top + LANE - 1 }));
    for (const [from, to, state] of history.spans(model, since, until)) {
      lane.append(titled(svg("rect", { class: `span state-${state}`, x: x(from), y: top + 5,
                                       width: Math.max(2, x(to) - x(from)), height: LANE - 12, rx: 2 }),
        `${model} ${state} ${clock(from)}–${to >= until ? "now" : clock(to)}`));
    }
    for (const swap of history.swaps.values()) {
      if (swap.model !== model) continue;
      const began = Date.parse(swap.began), ended = swap.ended ? Date.parse(swap.ended) : until;
      if (ended < since) continue;
      lane.append(titled(svg("rect", { class: `swap${swap.error ? " failed" : ""}`, "data-swap": swap.id,
                                       x: x(began), y: top + 2, width: Math.max(3, x(ended) - x(began)),
                                       height: 3 }),
        swapText(swap)));
      for (const evicted of swap.evict) {
        const j = models.indexOf(evicted);
        if (j < 0) continue;
        const from = AXIS + QUEUE + j * LANE + LANE / 2, to = top + LANE / 2;
        root.append(titled(svg("line", { class: "evict", x1: x(began), x2: x(began) + 4, y1: from, y2: to }),
          `${evicted} stopped for ${model} (swap ${swap.id})`));
      }
    }
    root.append(lane);
  });
  return root;
}

function swapText(swap) {
  const out = swap.evict.length ? `, stopping ${swap.evict.join(", ")}` : "";
  const took = swap.seconds === null ? "still running" : `took ${ms(Math.round(swap.seconds * 1000))}`;
  return `swap ${swap.id}: ${swap.model} in${out}; for ${causeText(swap.cause)}; ${took}`
    + (swap.error ? `; failed: ${swap.error}` : "");
}

function summary(history, models, since) {
  const swaps = [...history.swaps.values()].filter((s) => !s.ended || Date.parse(s.ended) >= since);
  return `Swap timeline of ${models.length} models: ${swaps.length} swaps in this window`;
}

// ------------------------------------------------------------------------------------ the table

function swapTable(history) {
  const swaps = [...history.swaps.values()].sort((a, b) => b.id - a.id);
  if (!swaps.length) return el("p", { class: "muted" }, "no swap in the last hour");
  return table(["began", "model", "stopped for it", "cause", "took", ""], swaps.map((s) => el("tr", { "data-swap": s.id },
    el("td", {}, clock(Date.parse(s.began))), el("td", {}, s.model),
    el("td", {}, s.evict.join(", ") || "–"), el("td", {}, causeText(s.cause)),
    el("td", {}, s.seconds === null ? "running…" : ms(Math.round(s.seconds * 1000))),
    el("td", { class: s.error ? "note" : "muted" }, s.error || (s.ended ? "ok" : "")))), { class: "swaps" });
}

// ------------------------------------------------------------------------------------ the page

export function render(main) {
  const note = el("p", { class: "note", role: "status" });
  const area = el("div", { class: "timeline-area" });
  const swaps = el("div");
  let seconds = 0, history = null, due = false;

  const draw = () => {
    due = false;
    if (!history) return;
    history.prune();
    area.replaceChildren(chart(history, seconds, Math.max(320, area.clientWidth || 800)));
    swaps.replaceChildren(swapTable(history));
  };
  const soon = () => { if (!due) { due = true; setTimeout(draw, 250); } };
  const choices = el("div", { class: "toolbar", role: "group", "aria-label": "window" },
    WINDOWS.map(([label, s]) => el("button", { type: "button", "aria-pressed": String(s === seconds), onclick: (e) => {
      seconds = s;
      choices.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === e.currentTarget)));
      draw();
    } }, label)),
    el("span", { class: "legend" }, el("i", { class: "state-starting" }), "starting", el("i", { class: "state-ready" }), "ready",
      el("i", { class: "state-stopping" }), "stopping", el("i", { class: "swap" }), "swap"));

  main.append(el("h1", {}, "Swap timeline"), choices, note, area, el("h2", {}, "Swaps"), swaps);
  const fetching = new Set(); // for each fetch under way, the messages told meanwhile
  const fetchHistory = async () => {
    const pending = [];
    fetching.add(pending);
    try {
      const fetched = new History(await request("api/timeline"));
      // An entry may be both in the document and told since: added once (a swap is replaced by its id).
      const key = (kind, entry) => `${kind}|${entry.at}|${entry.model || ""}`;
      const known = new Set([...fetched.states.map((s) => key("state", s)), ...fetched.queue.map((q) => key("queue", q))]);
      pending.filter((m) => m.kind === "swap" || !known.has(key(m.kind, m.entry))).forEach((m) => fetched.add(m));
      history = fetched;
      note.textContent = "";
      draw();
    } catch (error) {
      note.textContent = String(error);
    } finally {
      fetching.delete(pending);
    }
  };
  let wasConnected = feedState.connected;
  const offs = [
    on("timeline", (message) => {
      fetching.forEach((pending) => pending.push(message));
      if (history) { history.add(message); soon(); }
    }),
    on("modelStatus", soon),
    onConnection((connected) => { // back after a gap: what happened meanwhile was not told
      if (connected && !wasConnected) fetchHistory();
      wasConnected = connected;
    }),
  ];
  fetchHistory();
  const timer = setInterval(draw, 2000); // "now" moves on
  window.addEventListener("resize", soon);
  return () => { clearInterval(timer); window.removeEventListener("resize", soon); offs.forEach((off) => off()); };
}
