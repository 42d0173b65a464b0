// Timeline: to come.

import { el } from "./dom.js";

export function render(main) {
  main.append(el("h1", {}, "Timeline"), el("p", { class: "muted" }, "coming soon"));
}
