// A row of tabs over panels (the WAI-ARIA tabs pattern): only the selected tab is in the Tab order;
// Left and Right (round the row), Home and End move to another tab and show its panel.

import { el } from "../dom.js";

// entries: [{id, label, panel}] (panel: the nodes to show); onSelect(id) is told each change.
export function tabs(entries, selected, onSelect) {
  const buttons = entries.map((entry) => el("button", {
    type: "button", role: "tab", id: `tab-${entry.id}`, "aria-controls": `panel-${entry.id}`,
  }, entry.label));
  const panels = entries.map((entry) => el("section", {
    role: "tabpanel", id: `panel-${entry.id}`, "aria-labelledby": `tab-${entry.id}`, class: "tabpanel",
  }, entry.panel));

  const select = (index) => {
    buttons.forEach((button, i) => {
      button.setAttribute("aria-selected", String(i === index));
      button.tabIndex = i === index ? 0 : -1;
      panels[i].hidden = i !== index;
    });
    onSelect(entries[index].id);
  };
  const KEYS = { ArrowRight: 1, ArrowLeft: -1 };
  buttons.forEach((button, i) => {
    button.addEventListener("click", () => select(i));
    button.addEventListener("keydown", (event) => {
      const n = buttons.length;
      const to = event.key in KEYS ? (i + KEYS[event.key] + n) % n
        : event.key === "Home" ? 0 : event.key === "End" ? n - 1 : null;
      if (to === null) return;
      event.preventDefault();
      select(to);
      buttons[to].focus();
    });
  });
  select(Math.max(0, entries.findIndex((entry) => entry.id === selected)));
  return [el("div", { role: "tablist", "aria-label": "Playground", class: "tabs" }, buttons), ...panels];
}
