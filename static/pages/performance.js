// Performance: to come.

import { el } from "./dom.js";

export function render(main) {
  main.append(el("h1", {}, "Performance"), el("p", { class: "muted" }, "coming soon"));
}
