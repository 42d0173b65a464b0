// Activity: requests in flight (live, with cancel), then the stored activity, page by page, and totals.

import { feedState, on, request } from "../api.js";
import { bytes, el, ms, rate, table } from "./dom.js";

const LIMIT = 25;

function inflightTable(note) {
  const rows = [...feedState.inflight.values()].sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  if (!rows.length) return el("p", { class: "muted" }, "nothing in flight");
  return table(["model", "request", "elapsed", "received", ""], rows.map((r) => el("tr", {},
    el("td", {}, r.model), el("td", {}, `${r.method} ${r.req_path}`), el("td", {}, ms(Math.max(0, Date.now() - Date.parse(r.timestamp)))),
    el("td", {}, bytes(r.resp_bytes)),
    el("td", {}, el("button", { type: "button", onclick: async () => {
      try { await request(`api/inflight/${r.id}/cancel`, { method: "POST" }); } catch (e) { note.textContent = String(e); }
    } }, "Cancel")))));
}

function activityRow(record, capture) {
  const t = record.tokens || {};
  return el("tr", { "data-id": record.id },
    el("td", {}, record.id), el("td", {}, new Date(record.timestamp).toLocaleTimeString()),
    el("td", {}, record.model), el("td", {}, record.req_path), el("td", {}, record.resp_status_code),
    el("td", {}, t.input_tokens >= 0 ? t.input_tokens : "–"), el("td", {}, t.output_tokens >= 0 ? t.output_tokens : "–"),
    el("td", {}, rate(t.prompt_per_second)), el("td", {}, rate(t.tokens_per_second)),
    el("td", {}, ms(record.queue_ms)), el("td", {}, ms(record.load_ms)), el("td", {}, ms(record.duration_ms)),
    el("td", {}, record.has_capture
      ? el("button", { type: "button", onclick: () => capture(record.id) }, "Capture") : ""));
}

function decode(b64) {
  if (!b64) return "";
  const text = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

export function render(main) {
  const note = el("p", { class: "note", role: "status" });
  const inflight = el("div");
  const totals = el("p", { class: "muted" });
  const records = el("div");
  const detail = el("pre", { class: "capture", hidden: true });
  let page = 1;

  const capture = async (id) => {
    try {
      const c = await request(`api/captures/${id}`);
      detail.hidden = false;
      detail.textContent = `${c.req_path}\n\n— request —\n${decode(c.req_body)}\n\n— response —\n${decode(c.resp_body)}`;
    } catch (error) {
      note.textContent = String(error);
    }
  };
  const refresh = async () => {
    try {
      const [data, stats] = await Promise.all([
        request(`api/metrics/activity?limit=${LIMIT}&page=${page}`), request("api/metrics/stats")]);
      totals.textContent = `${stats.total_requests} requests · ${stats.total_input_tokens} tokens in · `
        + `${stats.total_output_tokens} tokens out`;
      records.replaceChildren(
        table(["#", "time", "model", "path", "status", "in", "out", "prompt", "gen", "queued", "load", "total", ""],
          data.data.map((r) => activityRow(r, capture))),
        el("div", { class: "toolbar" },
          el("button", { type: "button", disabled: page <= 1, onclick: () => { page -= 1; refresh(); } }, "Newer"),
          el("span", { class: "muted" }, ` page ${data.page} of ${Math.max(1, data.total_pages)} `),
          el("button", { type: "button", disabled: page >= data.total_pages, onclick: () => { page += 1; refresh(); } },
            "Older")));
    } catch (error) {
      note.textContent = String(error);
    }
  };
  const drawInflight = () => inflight.replaceChildren(inflightTable(note));

  main.append(el("h1", {}, "Activity"), note, el("h2", {}, "In flight"), inflight,
    el("h2", {}, "Finished"), totals, records, detail);
  drawInflight();
  refresh();
  const timer = setInterval(drawInflight, 1000);
  const offs = [on("inflight", drawInflight), on("activity", () => { if (page === 1) refresh(); })];
  return () => { clearInterval(timer); offs.forEach((off) => off()); };
}
