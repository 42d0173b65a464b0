// A small SVG line chart: time on x, values on y, several series, each one's last value in the
// legend, and a sentence saying the same for screen readers (the SVG's aria-label).
//
// The plot is drawn in a fixed viewBox stretched to its box (preserveAspectRatio="none"); lines keep
// their width whatever the stretch (vector-effect, set in performance.css), and the axis labels are
// HTML placed in percent, so a chart follows its container's width without being drawn again.
// Colours come from CSS custom properties (--series-0…3, per theme, and --muted for faint series).

import { clock, el, ms, svg } from "./dom.js";

const WIDTH = 1000;
const HEIGHT = 100;

// The smallest of 1, 2, 2.5, 5 × 10^k that is at least `value`: a round top for the y axis; with
// `binary`, that many KiB, MiB… (1024^j) instead, for byte amounts.
function roundTop(value, binary) {
  const unit = binary ? 1024 ** Math.max(0, Math.floor(Math.log(value) / Math.log(1024))) : 1;
  const decade = 10 ** Math.floor(Math.log10(value / unit));
  return unit * [1, 2, 2.5, 5, 10].map((m) => m * decade).find((top) => top * unit >= value);
}

// series: [{name, points: [[ms, value], …] oldest first, faint}] (faint ones: thin, grey, not in the
// legend); format(value) → text; max: the top of the y axis, else a round number above the data and
// at least `least` (`binary`: round in KiB, MiB…); empty: what an empty chart says.
export function lineChart({ id, title, series, format, max, least = 1, binary = false, empty = "no data yet" }) {
  const drawn = series.filter((s) => s.points.length);
  const points = drawn.flatMap((s) => s.points);
  const figure = el("figure", { class: "chart", "data-chart": id });
  const named = series.filter((s) => !s.faint);
  const legend = el("ul", { class: "legend" }, named.map((s, i) => el("li", { class: `s${i}` },
    el("span", { class: "swatch", "aria-hidden": "true" }), `${s.name} `,
    el("strong", {}, s.points.length ? format(s.points.at(-1)[1]) : "–"))));
  figure.append(el("figcaption", {}, el("span", { class: "title" }, title), legend));
  if (!points.length) {
    figure.append(el("div", { class: "plot empty" }, el("span", { class: "muted" }, empty)));
    return figure;
  }

  const from = Math.min(...points.map((p) => p[0]));
  const to = Math.max(...points.map((p) => p[0]));
  const top = max ?? roundTop(Math.max(least, ...points.map((p) => p[1])), binary);
  const x = (t) => (to > from ? ((t - from) / (to - from)) * WIDTH : WIDTH);
  const y = (v) => HEIGHT - Math.min(Math.max(v / top, 0), 1) * HEIGHT;
  const path = (s) => s.points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)} ${y(v).toFixed(2)}`).join("");

  const summary = named.filter((s) => s.points.length).map((s) => {
    const peak = Math.max(...s.points.map((p) => p[1]));
    return `${s.name} ${format(s.points.at(-1)[1])} (peak ${format(peak)})`;
  });
  const drawing = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${title}, last ${ms(to - from)}: ${summary.join(", ")}` });
  for (const level of [0, 0.5, 1]) {
    drawing.append(svg("line", { class: "grid", x1: 0, x2: WIDTH, y1: y(level * top), y2: y(level * top) }));
  }
  // Faint series first, so the named ones are drawn over them.
  const ordered = [...series.filter((s) => s.faint), ...named];
  for (const s of ordered.filter((s) => s.points.length)) {
    const cls = s.faint ? "faint" : `s${named.indexOf(s)}`;
    const [t, v] = s.points.at(-1);
    drawing.append(svg("path", { class: `line ${cls}`, d: path(s) }));
    if (!s.faint) drawing.append(svg("path", { class: `last ${cls}`, d: `M${x(t).toFixed(1)} ${y(v).toFixed(2)}h0` }));
  }

  const ticks = [1, 0.5, 0].map((level) => format(level * top));
  const seconds = to - from < 10 * 60 * 1000;
  const times = to > from ? [from, (from + to) / 2, to] : [to];
  // The y labels' column is as wide as the longest of them (plus a little for wide letters).
  const gutter = Math.max(...ticks.map((t) => t.length)) + 1;
  figure.append(el("div", { class: "plot", style: `--gutter: ${gutter}ch` },
    el("div", { class: "ticks", "aria-hidden": "true" }, ticks.map((text, i) =>
      el("span", { class: "tick", style: `top: ${i * 50}%` }, text))),
    drawing,
    el("div", { class: "times", "aria-hidden": "true" }, times.map((t) => el("span", {}, clock(t, seconds))))));
  return figure;
}
