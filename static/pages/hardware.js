// Hardware: to come.

import { el } from "./dom.js";

export function render(main) {
  main.append(el("h1", {}, "Hardware"), el("p", { class: "muted" }, "coming soon"));
}
