// A table's column chooser: which columns show and in what order, as a small menu (a checkbox and
// move-up/move-down buttons per column), kept in localStorage under the key it is given. At least one
// column always shows.

import { el } from "./dom.js";

// columns: [{id, label}] in their default order; changed(): called after each change.
export function columnChooser(storageKey, columns, changed) {
  const labels = new Map(columns.map((c) => [c.id, c.label]));
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(storageKey)) || {}; } catch { /* unreadable: the defaults */ }
  // Saved ids still known, in their saved order; columns added since, after them.
  const order = [...(saved.order || []).filter((id) => labels.has(id)), ...columns.map((c) => c.id)]
    .filter((id, i, all) => all.indexOf(id) === i);
  const hidden = new Set((saved.hidden || []).filter((id) => labels.has(id)));
  const list = el("ul", { class: "column-list" });
  const menu = el("details", { class: "columns" }, el("summary", {}, "Columns"), list);

  function save() {
    localStorage.setItem(storageKey, JSON.stringify({ order, hidden: [...hidden] }));
    draw();
    changed();
  }
  const again = (id, control) => list.querySelector(`[data-column="${CSS.escape(id)}"] ${control}`)?.focus();
  function toggle(id, shown) {
    if (shown) hidden.delete(id); else hidden.add(id);
    save();
    again(id, "input");
  }
  function move(id, by) {
    const from = order.indexOf(id);
    order.splice(from, 1);
    order.splice(from + by, 0, id);
    save();
    again(id, `button[data-by="${by}"]:not(:disabled)`);
  }
  function draw() {
    const shown = order.filter((id) => !hidden.has(id)).length;
    list.replaceChildren(...order.map((id, i) => {
      const label = labels.get(id);
      const box = el("input", { type: "checkbox", "aria-label": `show ${label}`, checked: !hidden.has(id),
                                disabled: shown === 1 && !hidden.has(id), onchange: () => toggle(id, box.checked) });
      return el("li", { "data-column": id }, el("label", {}, box, ` ${label}`),
        el("button", { type: "button", "data-by": -1, disabled: i === 0, "aria-label": `move ${label} up`,
                       onclick: () => move(id, -1) }, "↑"),
        el("button", { type: "button", "data-by": 1, disabled: i === order.length - 1, "aria-label": `move ${label} down`,
                       onclick: () => move(id, 1) }, "↓"));
    }));
  }
  menu.addEventListener("keydown", (event) => { // Escape closes the menu, the focus back on its button
    if (event.key !== "Escape" || !menu.open) return;
    menu.open = false;
    menu.querySelector("summary").focus();
  });
  draw();
  return { node: menu, visible: () => order.filter((id) => !hidden.has(id)) };
}
