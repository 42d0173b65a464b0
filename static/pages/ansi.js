// ANSI colours in log text, as DOM: SGR sequences (colours, bold, dim, italic, underline, resets) become
// <span class="ansi-…"> around text nodes; every other escape sequence and control character is dropped.
// Only text nodes are made from the log's text: nothing it holds is ever parsed as HTML.

import { el } from "./dom.js";

// CSI (ESC [ params intermediates final), OSC (ESC ] … BEL or ESC \), and the two-byte escapes.
const SEQUENCE = /\x1b(?:\[([0-?]*)[ -/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)/g;
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g; // tab and newline stay

export function stripAnsi(text) {
  return text.replace(SEQUENCE, "").replace(CONTROL, "");
}

// Renders text one piece (a line) at a time; the style carries over from one piece to the next, as in a
// terminal.
export class AnsiRenderer {
  constructor() {
    this.reset();
  }

  reset() {
    this.fg = null; // 0–15: the 8 colours, then their bright forms
    this.bg = null;
    this.bold = this.dim = this.italic = this.underline = false;
  }

  render(text) {
    const nodes = [];
    let at = 0;
    for (const match of text.matchAll(SEQUENCE)) {
      this.emit(nodes, text.slice(at, match.index));
      if (match[2] === "m") this.apply(match[1]);
      at = match.index + match[0].length;
    }
    this.emit(nodes, text.slice(at));
    return nodes;
  }

  emit(nodes, text) {
    const plain = text.replace(CONTROL, "");
    if (!plain) return;
    const classes = [
      this.fg !== null && `ansi-fg-${this.fg}`, this.bg !== null && `ansi-bg-${this.bg}`,
      this.bold && "ansi-bold", this.dim && "ansi-dim", this.italic && "ansi-italic",
      this.underline && "ansi-underline",
    ].filter(Boolean);
    nodes.push(classes.length ? el("span", { class: classes.join(" ") }, plain) : document.createTextNode(plain));
  }

  apply(params) {
    const codes = params.split(";").map((code) => Number(code) || 0); // "" is 0, a reset
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      if (code === 0) this.reset();
      else if (code === 1) this.bold = true;
      else if (code === 2) this.dim = true;
      else if (code === 3) this.italic = true;
      else if (code === 4) this.underline = true;
      else if (code === 22) this.bold = this.dim = false;
      else if (code === 23) this.italic = false;
      else if (code === 24) this.underline = false;
      else if (code >= 30 && code <= 37) this.fg = code - 30;
      else if (code >= 90 && code <= 97) this.fg = code - 90 + 8;
      else if (code === 39) this.fg = null;
      else if (code >= 40 && code <= 47) this.bg = code - 40;
      else if (code >= 100 && code <= 107) this.bg = code - 100 + 8;
      else if (code === 49) this.bg = null;
      else if (code === 38 || code === 48) i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 0; // 256/RGB: skipped
    }
  }
}
