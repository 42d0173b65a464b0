// Small DOM helpers shared by the pages: elements (HTML and SVG), tables, labelled fields, and how numbers
// and times are written.

const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// head: each column's heading (text, or a <th> of its own, e.g. a sortable one); attrs: the table's.
export function table(head, rows, attrs = {}) {
  const th = (h) => (h instanceof Element && h.tagName === "TH" ? h : el("th", {}, h));
  return el("table", attrs, el("thead", {}, el("tr", {}, head.map(th))), el("tbody", {}, rows));
}

// A control with its visible label above it.
export function field(label, control) {
  return el("label", { class: "field" }, el("span", { class: "muted" }, label), control);
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

// A duration given in milliseconds: "250 ms", "2.50 s", "45 s", "12 min".
export function ms(n) {
  if (n === null || n === undefined || n < 0) return "–";
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 10_000) return `${(n / 1000).toFixed(2)} s`;
  return n < 120_000 ? `${Math.round(n / 1000)} s` : `${Math.round(n / 60_000)} min`;
}

// A time of day (t: a Date, or milliseconds since the epoch), to the second unless `seconds` is false.
export function clock(t, seconds = true) {
  return new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined });
}

export function rate(n) {
  return n === null || n === undefined || n < 0 ? "–" : `${n.toFixed(1)}/s`;
}

// Redraws `container` with `redraw()` and gives the focus back to the control that had it, found again
// by its row (the closest element with a data-model or data-id), its cell and its text; when that control
// is gone or disabled (Load, once the model starts), to the first enabled control of the same cell, else
// of the row.
export function keepingFocus(container, redraw) {
  const focused = document.activeElement;
  if (!focused || focused === container || !container.contains(focused)) {
    redraw();
    return;
  }
  const row = focused.closest("[data-model],[data-id]");
  const where = row ? (row.dataset.model !== undefined ? `[data-model="${CSS.escape(row.dataset.model)}"]`
    : `[data-id="${CSS.escape(row.dataset.id)}"]`) : null;
  const label = focused.textContent;
  const cell = row ? [...row.children].findIndex((child) => child.contains(focused)) : -1;
  redraw();
  const again = where && container.querySelector(where);
  if (!again) return;
  const enabled = (node) => [...(node?.querySelectorAll("button, a, input, select") || [])].filter((c) => !c.disabled);
  const controls = enabled(again);
  const same = controls.find((c) => c.tagName === focused.tagName && c.textContent === label);
  (same || enabled(again.children[cell])[0] || controls[0])?.focus();
}
