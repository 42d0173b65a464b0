// A histogram as a small SVG bar chart: `/api/metrics/stats`' {bins, min, max, binSize, p50, p95, p99}.
//
// Colours come from the theme (activity.css styles .histogram's parts); the chart's text equivalent is
// its aria-label, and each bar has a <title> with its range and count.

import { svg } from "./dom.js";

const WIDTH = 300, HEIGHT = 90, AXIS = 16;

const round = (n) => (n >= 100 ? Math.round(n) : Number(n.toFixed(1)));

// A sentence saying what the chart shows (its aria-label).
export function summary(label, h, unit) {
  const count = h.bins.reduce((a, b) => a + b, 0);
  return `${label}: ${count} request${count === 1 ? "" : "s"} from ${round(h.min)} to ${round(h.max)} ${unit}; `
    + `median ${round(h.p50)}, p95 ${round(h.p95)}, p99 ${round(h.p99)}`;
}

// One bar per bin; when every value was the same (one bin, binSize 0), one narrow bar in the middle.
export function histogram(label, h, unit) {
  const single = h.binSize === 0;
  const peak = Math.max(1, ...h.bins);
  const step = single ? WIDTH / 5 : WIDTH / h.bins.length;
  const offset = single ? (WIDTH - step) / 2 : 0;
  const range = (from) => (single ? `${round(from)}` : `${round(from)}–${round(from + h.binSize)}`);
  const bars = h.bins.map((count, i) => {
    const height = (count / peak) * (HEIGHT - AXIS - 4);
    return svg("rect", { class: "bar", x: offset + i * step + 1, y: HEIGHT - AXIS - height,
                         width: Math.max(1, step - 2), height },
      svg("title", {}, `${range(h.min + i * h.binSize)} ${unit}: ${count}`));
  });
  const ends = single
    ? [svg("text", { x: WIDTH / 2, y: HEIGHT - 3, "text-anchor": "middle" }, `${round(h.min)} ${unit}`)]
    : [svg("text", { x: 0, y: HEIGHT - 3 }, String(round(h.min))),
       svg("text", { x: WIDTH, y: HEIGHT - 3, "text-anchor": "end" }, `${round(h.max)} ${unit}`)];
  return svg("svg", { class: "histogram", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
                      "aria-label": summary(label, h, unit) },
    ...bars, svg("line", { class: "axis", x1: 0, x2: WIDTH, y1: HEIGHT - AXIS, y2: HEIGHT - AXIS }), ...ends);
}
