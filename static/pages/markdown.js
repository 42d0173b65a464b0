// Markdown export: a table as GitHub-flavoured Markdown, and the buttons that copy it to the clipboard or
// download it as a .md file.

import { el } from "./dom.js";

// One cell on one line: its pipes escaped, its line breaks made spaces.
const cell = (text) => String(text).replace(/\|/g, "\\|").replace(/\s*[\r\n]+\s*/g, " ");
const line = (cells) => `| ${cells.map(cell).join(" | ")} |`;

// head: the headings; rows: each row's cells, as text.
export function markdownTable(head, rows) {
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n") + "\n";
}

// make(): {text, name, what} (the Markdown, the file's name, what it holds, e.g. "25 rows"), or null when
// there is nothing to export. Returns the buttons and a status line that says what was done.
export function markdownButtons(make) {
  const status = el("span", { class: "muted", role: "status" });
  const copy = el("button", { type: "button", title: "Copy the table as Markdown" }, "Copy Markdown");
  const download = el("button", { type: "button", title: "Download the table as a Markdown file" }, "Download .md");
  copy.addEventListener("click", async () => {
    const made = make();
    if (!made) return;
    try {
      await navigator.clipboard.writeText(made.text);
      status.textContent = `copied ${made.what}`;
    } catch (error) {
      status.textContent = `could not copy (${error.message || error}): download it instead`;
    }
  });
  download.addEventListener("click", () => {
    const made = make();
    if (!made) return;
    const url = URL.createObjectURL(new Blob([made.text], { type: "text/markdown" }));
    el("a", { href: url, download: made.name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 0);
    status.textContent = `downloaded ${made.what}`;
  });
  return [copy, download, status];
}
