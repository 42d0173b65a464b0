// Activity (the landing page): the requests in flight, live; the finished ones paged, filtered and sorted by
// the server (/api/metrics/activity), each opening its capture, its columns chosen (columns.js) and the page
// exportable as Markdown (markdown.js); totals and speed histograms (/api/metrics/stats, same filters).
//
// A finished request announced by the feed (`activity`) shows up by itself while the table is on its first
// page, newest first; otherwise a "N new" button says so and leads there.

import { feedState, on, onConnection, request, throttled } from "../api.js";
import { captureDialog } from "./capture.js";
import { columnChooser } from "./columns.js";
import { clock, el, field, ms, rate, table } from "./dom.js";
import { histogram } from "./histogram.js";
import { inflightTable } from "./inflight.js";
import { markdownButtons, markdownTable } from "./markdown.js";

const SIZES = [25, 50, 100];
const STATUSES = [["", "any"], ["2xx", "2xx"], ["4xx,5xx", "errors"], ["4xx", "4xx"], ["5xx", "5xx"]];
const TEXT_SORTS = new Set(["model", "req_path"]); // sorted A→Z on the first click; the others largest first
const REFRESH_MS = 1500; // finished requests announced faster than this are fetched together

const count = (n) => (n >= 0 ? n : "–");
const total = (n, what) => el("span", {}, el("b", {}, n.toLocaleString()), ` ${what}`);

function status(record) {
  const failed = !record.resp_status_code || record.resp_status_code >= 400; // none: no answer at all
  return el("span", { class: failed ? "status bad" : "status", title: record.error_msg || null },
    record.resp_status_code);
}

function time(record) {
  const at = new Date(record.timestamp);
  return el("time", { datetime: record.timestamp, title: at.toLocaleString() }, clock(at));
}

// The finished table's columns: heading, the server's sort key (also the column's id), the cell, and the
// cell as exported text when it is not the cell's own text.
const COLUMNS = [
  ["#", "id", (r) => r.id],
  ["time", "time", time, (r) => new Date(r.timestamp).toLocaleString()],
  ["model", "model", (r) => r.model],
  ["path", "req_path", (r) => r.req_path],
  ["status", "resp_status_code", status],
  ["cached", "cached", (r) => count(r.tokens.cache_tokens)],
  ["in", "prompt", (r) => count(r.tokens.input_tokens)],
  ["out", "generated", (r) => count(r.tokens.output_tokens)],
  ["prompt t/s", "prompt_speed", (r) => rate(r.tokens.prompt_per_second)],
  ["gen t/s", "gen_speed", (r) => rate(r.tokens.tokens_per_second)],
  ["queued", "queued", (r) => ms(r.queue_ms)],
  ["load", "load", (r) => ms(r.load_ms)],
  ["ttfb", "ttfb", (r) => ms(r.ttfb_ms)],
  ["total", "duration", (r) => ms(r.duration_ms)],
];

// Runs `load` one at a time; calls made meanwhile make it run once more after, so the last state wins.
function serial(load) {
  let running = false, again = false;
  return async function run() {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await load(); } while (again);
    } finally {
      running = false;
    }
  };
}

const textOf = (content) => (content instanceof Node ? content.textContent : String(content));
const exported = ([, , cell, text], record) => (text ? text(record) : textOf(cell(record)));

function localInput(label) {
  return el("input", { type: "datetime-local", step: 1, "aria-label": label });
}

function speedFigure(title, h) {
  const caption = el("figcaption", {}, title);
  if (!h) return el("figure", { class: "speed" }, caption, el("p", { class: "muted" }, "no speeds yet"));
  return el("figure", { class: "speed" }, caption, histogram(title, h, "t/s"),
    el("p", { class: "muted" }, `p50 ${rate(h.p50)} · p95 ${rate(h.p95)} · p99 ${rate(h.p99)}`));
}

export function render(main) {
  const view = { model: "", status: "", path: "", start: "", end: "", limit: SIZES[0], page: 1, sort: "id",
                 order: "desc" };
  let unseen = 0; // finished requests announced while the table showed something else than the newest

  const note = el("p", { class: "note", role: "status" });
  const inflight = inflightTable(note);
  const capture = captureDialog();
  const models = el("select", { "aria-label": "model" });
  const from = localInput("from"), to = localInput("to");
  const statuses = el("select", { "aria-label": "status" }, STATUSES.map(([value, label]) => el("option", { value }, label)));
  const path = el("input", { type: "search", "aria-label": "path", placeholder: "path contains", size: 14 });
  const size = el("select", { "aria-label": "rows per page" }, SIZES.map((n) => el("option", { value: n }, n)));
  const stats = el("div", { class: "stats" });
  const records = el("div");
  const pager = el("div", { class: "toolbar pager" });
  const fresh = el("button", { type: "button", class: "fresh", hidden: true });
  const byId = new Map(COLUMNS.map((column) => [column[1], column]));
  const chooser = columnChooser("llama-swap.activity.columns",
    COLUMNS.map(([label, key]) => ({ id: key, label: label === "#" ? "# (id)" : label })), () => drawTable());
  const shownColumns = () => chooser.visible().map((id) => byId.get(id));
  let shown = null; // the page of finished requests drawn last

  // The page shown, as it is filtered and sorted, with its visible columns.
  function exportable() {
    if (!shown || !shown.data.length) return null;
    const columns = shownColumns();
    return {
      text: markdownTable(columns.map(([label]) => label),
                          shown.data.map((record) => columns.map((column) => exported(column, record)))),
      name: `llama-swap-activity-${new Date().toISOString().slice(0, 19).replace(/:/g, "-")}.md`,
      what: `${shown.data.length} row${shown.data.length === 1 ? "" : "s"}`,
    };
  }

  const newestFirst = () => view.page === 1 && view.order === "desc" && (view.sort === "id" || view.sort === "time");
  const rfc3339 = (local) => (local ? new Date(local).toISOString() : "");

  // The filters, as both the page and the stats take them.
  function filters() {
    const params = new URLSearchParams();
    if (view.model) params.set("model", view.model);
    if (view.status) view.status.split(",").forEach((s) => params.append("status", s));
    if (view.path) params.set("path", view.path);
    if (view.start) params.set("start", rfc3339(view.start));
    if (view.end) params.set("end", rfc3339(view.end));
    return params;
  }

  function query() {
    const params = filters();
    Object.entries({ page: view.page, limit: view.limit, sort: view.sort, order: view.order })
      .forEach(([key, value]) => params.set(key, value));
    return params;
  }

  function fillModels() {
    const ids = feedState.models.map((m) => m.id);
    if (view.model && !ids.includes(view.model)) ids.push(view.model);
    models.replaceChildren(el("option", { value: "" }, "all models"), ...ids.map((id) => el("option", { value: id }, id)));
    models.value = view.model;
  }

  function heading([label, key]) {
    if (!key) return el("th", {}, label);
    const sorted = view.sort === key;
    const arrow = sorted ? (view.order === "asc" ? "▲" : "▼") : "";
    return el("th", { "aria-sort": sorted ? (view.order === "asc" ? "ascending" : "descending") : null },
      el("button", { type: "button", class: "sort", onclick: () => sortBy(key) },
        label, el("span", { class: "arrow", "aria-hidden": "true" }, arrow)));
  }

  function row(record, columns) {
    const cells = columns.map(([, , cell]) => el("td", {}, cell(record)));
    const open = record.has_capture
      ? el("button", { type: "button", onclick: () => capture.open(record) }, "Capture") : "";
    return el("tr", { "data-id": record.id, class: record.has_capture ? "opens" : null,
                      onclick: (event) => { if (record.has_capture && event.target.closest("button") === null) capture.open(record); } },
      cells, el("td", {}, open));
  }

  function drawTable(data = shown) {
    if (!data) return;
    shown = data;
    const columns = shownColumns();
    records.replaceChildren(data.data.length
      ? table([...columns.map(heading), ""], data.data.map((record) => row(record, columns)), { class: "finished" })
      : el("p", { class: "muted" }, "no finished requests match"));
    const pages = Math.max(1, data.total_pages);
    pager.replaceChildren(
      el("button", { type: "button", disabled: view.page <= 1, onclick: () => go(view.page - 1) }, "‹ Previous"),
      el("span", { class: "muted" }, `page ${data.page} of ${pages} · ${data.total} request${data.total === 1 ? "" : "s"}`),
      el("button", { type: "button", disabled: view.page >= pages, onclick: () => go(view.page + 1) }, "Next ›"));
  }

  function drawStats(s) {
    const filtered = view.status || view.path || view.start || view.end;
    const scope = (view.model ? `${view.model}'s requests` : "all requests") + (filtered ? " that match" : "");
    stats.replaceChildren(
      el("p", { class: "totals" },
        total(s.total_requests, "requests"),
        total(s.total_input_tokens, "tokens in"),
        total(s.total_output_tokens, "tokens out"),
        total(s.total_cache_tokens, "cached"),
        el("span", { class: "muted" }, scope)),
      el("div", { class: "speeds" }, speedFigure("prompt speed", s.prompt_histogram),
        speedFigure("generation speed", s.gen_histogram)));
  }

  const loadTable = serial(async () => {
    try {
      const data = await request(`api/metrics/activity?${query()}`);
      if (newestFirst()) unseen = 0;
      showUnseen();
      drawTable(data);
    } catch (error) {
      note.textContent = String(error);
    }
  });
  const loadStats = serial(async () => {
    try {
      drawStats(await request(`api/metrics/stats?${filters()}`));
    } catch (error) {
      note.textContent = String(error);
    }
  });

  function showUnseen() {
    fresh.hidden = unseen === 0;
    fresh.textContent = `${unseen} new`;
  }
  function go(page) {
    view.page = page;
    loadTable();
  }
  function sortBy(key) {
    view.order = view.sort === key ? (view.order === "asc" ? "desc" : "asc") : (TEXT_SORTS.has(key) ? "asc" : "desc");
    view.sort = key;
    go(1);
  }
  function filter() {
    Object.assign(view, { model: models.value, status: statuses.value, path: path.value.trim(), start: from.value,
                          end: to.value, limit: Number(size.value), page: 1 });
    note.textContent = "";
    loadTable();
    loadStats();
  }
  function reset() {
    models.value = statuses.value = path.value = from.value = to.value = "";
    size.value = SIZES[0];
    filter();
  }

  [models, statuses, path, from, to, size].forEach((control) => control.addEventListener("change", filter));
  fresh.addEventListener("click", () => {
    Object.assign(view, { sort: "id", order: "desc" });
    go(1);
  });
  fillModels();

  main.append(el("h1", {}, "Activity"), note,
    el("h2", {}, "In flight"), inflight.node,
    el("h2", {}, "Finished"),
    el("div", { class: "toolbar filters" }, field("model", models), field("status", statuses),
      field("path", path), field("from", from), field("to", to),
      field("rows", size), el("button", { type: "button", onclick: reset }, "Reset"), fresh),
    stats, el("div", { class: "toolbar table-tools" }, chooser.node, ...markdownButtons(exportable)), records, pager);

  inflight.draw();
  loadTable();
  loadStats();
  const timer = setInterval(inflight.draw, 1000);
  const refresh = throttled(() => {
    loadStats();
    if (newestFirst()) loadTable();
  }, REFRESH_MS);
  let wasConnected = feedState.connected;
  const offs = [
    on("inflight", inflight.draw),
    on("modelStatus", fillModels),
    on("activity", (message) => {
      if (view.model && message.model && message.model !== view.model) return; // cannot match the filter
      if (!newestFirst()) {
        unseen += 1;
        showUnseen();
      }
      refresh();
    }),
    onConnection((connected) => { // back after a gap: what finished meanwhile was not announced
      if (connected && !wasConnected) { loadTable(); loadStats(); }
      wasConnected = connected;
    }),
  ];
  return () => {
    clearInterval(timer);
    refresh.cancel();
    offs.forEach((off) => off());
    capture.remove();
  };
}
