// The requests in flight, live from the feed (feedState.inflight): model, request, client, user agent,
// session, whether the answer has begun, elapsed time (ticking), bytes received, and a Cancel button.
//
// Rows are kept and updated in place, so a focused Cancel button keeps its focus while the numbers move.
// Elapsed time is the server's elapsed_ms plus the time since the entry arrived (a request waiting for a
// model is not republished while it waits); never this browser's clock against the server's timestamp,
// which a skewed clock would get wrong.

import { feedState, request } from "../api.js";
import { headerValue } from "./capture.js";
import { bytes, el, ms, table } from "./dom.js";

const HEAD = ["model", "request", "client", "user agent", "session", "state", "elapsed", "received", ""];

const byStart = (a, b) => a.timestamp.localeCompare(b.timestamp) || Number(a.id) - Number(b.id);

function session(entry) {
  const names = (feedState.uiConfig && feedState.uiConfig.activity && feedState.uiConfig.activity.session_id) || [];
  return names.map((name) => headerValue(entry.req_headers, name)).find(Boolean) || "–";
}

function elapsed(entry) {
  return (entry.elapsed_ms || 0) + Math.max(0, performance.now() - entry.received);
}

function newRow(entry, note) {
  const cells = { state: el("td"), elapsed: el("td"), received: el("td") };
  const agent = headerValue(entry.req_headers, "user-agent");
  const cancel = el("button", { type: "button", onclick: async () => {
    cancel.disabled = true;
    try {
      await request(`api/inflight/${entry.id}/cancel`, { method: "POST" });
    } catch (error) {
      note.textContent = String(error);
      cancel.disabled = false;
    }
  } }, "Cancel");
  const tr = el("tr", { "data-inflight": entry.id },
    el("td", {}, entry.model), el("td", {}, `${entry.method} ${entry.req_path}`), el("td", {}, entry.remote_ip || "–"),
    el("td", { class: "agent", title: agent }, agent || "–"), el("td", {}, session(entry)),
    cells.state, cells.elapsed, cells.received, el("td", {}, cancel));
  return { tr, cells };
}

// {node, draw}: draw() brings the table up to date with feedState.inflight (call it on the feed's
// inflight messages and every second).
export function inflightTable(note) {
  const node = el("div");
  const grid = table(HEAD, []);
  const body = grid.querySelector("tbody");
  const empty = el("p", { class: "muted" }, "nothing in flight");
  const rows = new Map(); // id -> {tr, cells}

  const draw = () => {
    for (const [id, row] of rows) {
      if (!feedState.inflight.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    [...feedState.inflight.values()].sort(byStart).forEach((entry, index) => {
      if (!rows.has(entry.id)) rows.set(entry.id, newRow(entry, note));
      const row = rows.get(entry.id);
      row.cells.state.textContent = Object.keys(entry.resp_headers || {}).length ? "answering" : "waiting";
      row.cells.elapsed.textContent = ms(elapsed(entry));
      row.cells.received.textContent = bytes(entry.resp_bytes || 0);
      if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
    });
    const shown = rows.size ? grid : empty;
    if (node.firstChild !== shown) node.replaceChildren(shown); // not re-added: that would drop the focus
  };
  return { node, draw };
}
