// Performance: the host's CPU, memory, load and network, and each GPU's, over the last hour, from
// /api/performance (polled with ?after=<newest timestamp> while the page is shown). Also owns whether
// the Performance link is in the nav at all: a server whose monitor is off (performance.disabled)
// answers 503 {"enabled": false}, and then the link goes and the page says the monitor is off.

import { request } from "../api.js";
import { bytes, clock, el, ms } from "./dom.js";
import { lineChart } from "./chart.js";

const POLL_MS = 5000; // the server samples every 5 s at most (performance.every ≥ 5)
const HOUR_MS = 3600 * 1000;
const MIB = 1024 * 1024;

const percent = (v) => `${v.toFixed(v > 0 && v < 10 ? 1 : 0)} %`;
const mib = (v) => bytes(v * MIB);
const perSecond = (v) => `${bytes(Math.round(v))}/s`;
const at = (stat) => Date.parse(stat.timestamp);
const average = (values) => values.reduce((sum, v) => sum + v, 0) / (values.length || 1);

// The readings stamped after `after` (all of them when null), or null when the monitor is off.
async function readings(after, signal) {
  const query = after ? `?after=${encodeURIComponent(after)}` : "";
  try {
    return await request(`api/performance${query}`, { signal });
  } catch (error) {
    if (error.data && error.data.enabled === false) return null;
    throw error;
  }
}

function hideLink() {
  document.getElementById("nav-performance").hidden = true;
}

// Called once at startup: hides the nav link when the monitor is off.
export async function probe() {
  try {
    if (await readings(new Date().toISOString())) return;
    hideLink();
  } catch (error) {
    console.warn("llama-swap: performance probe", error);
  }
}

// Received and sent bytes per second, from the cumulative counters of the interfaces two samples share.
function network(sys) {
  const received = [];
  const sent = [];
  for (let i = 1; i < sys.length; i++) {
    const seconds = (at(sys[i]) - at(sys[i - 1])) / 1000;
    if (seconds <= 0) continue;
    const before = new Map(sys[i - 1].net_io.map((n) => [n.name, n]));
    let inBytes = 0;
    let outBytes = 0;
    for (const now of sys[i].net_io) {
      const then = before.get(now.name);
      if (!then) continue;
      inBytes += Math.max(0, now.bytes_recv - then.bytes_recv); // a reset counter counts as no traffic
      outBytes += Math.max(0, now.bytes_sent - then.bytes_sent);
    }
    received.push([at(sys[i]), inBytes / seconds]);
    sent.push([at(sys[i]), outBytes / seconds]);
  }
  return { received, sent };
}

function hostCharts(sys) {
  const series = (name, value, extra = {}) => ({ name, points: sys.map((s) => [at(s), value(s)]), ...extra });
  const cores = sys.at(-1).cpu_util_per_core.length;
  const perCore = Array.from({ length: cores }, (_, core) =>
    series(`core ${core}`, (s) => s.cpu_util_per_core[core] ?? 0, { faint: true }));
  const last = sys.at(-1);
  const memory = [series("used", (s) => s.mem_used_mb)];
  if (last.swap_total_mb > 0) memory.push(series("swap used", (s) => s.swap_used_mb));
  const net = network(sys);
  return [
    lineChart({ id: "cpu", title: `CPU (${cores} cores)`, format: percent, max: 100,
      series: [series("average", (s) => average(s.cpu_util_per_core)), ...perCore] }),
    lineChart({ id: "memory", title: `Memory (${mib(last.mem_total_mb)})`, format: mib,
      max: Math.max(last.mem_total_mb, last.swap_total_mb), series: memory }),
    lineChart({ id: "load", title: "Load average", format: (v) => v.toFixed(2), series: [
      series("1 min", (s) => s.load_avg_1), series("5 min", (s) => s.load_avg_5), series("15 min", (s) => s.load_avg_15)] }),
    lineChart({ id: "network", title: "Network", format: perSecond, least: 1024, binary: true,
      empty: "needs two samples",
      series: [{ name: "received", points: net.received }, { name: "sent", points: net.sent }] }),
  ];
}

function gpuCharts(readings) {
  const last = readings.at(-1);
  const series = (name, value) => ({ name, points: readings.map((g) => [at(g), value(g)]) });
  const temperatures = [series("GPU", (g) => g.temp_c)];
  if (readings.some((g) => g.vram_temp_c)) temperatures.push(series("VRAM", (g) => g.vram_temp_c));
  return el("section", { class: "gpu", "data-gpu": last.id },
    el("h3", {}, `GPU ${last.id} · ${last.name}`),
    el("div", { class: "charts" },
      lineChart({ id: `gpu${last.id}-util`, title: "Utilisation", format: percent, max: 100, series: [
        series("compute", (g) => g.gpu_util_pct), series("memory", (g) => g.mem_util_pct)] }),
      lineChart({ id: `gpu${last.id}-memory`, title: `Memory (${mib(last.mem_total_mb)})`, format: mib,
        max: last.mem_total_mb || undefined, series: [series("used", (g) => g.mem_used_mb)] }),
      lineChart({ id: `gpu${last.id}-temperature`, title: "Temperature", format: (v) => `${Math.round(v)} °C`,
        series: temperatures }),
      lineChart({ id: `gpu${last.id}-power`, title: "Power", format: (v) => `${v.toFixed(0)} W`,
        series: [series("draw", (g) => g.power_draw_w)] })));
}

function byGpu(gpu) {
  const groups = new Map();
  for (const g of gpu) {
    if (!groups.has(g.id)) groups.set(g.id, []);
    groups.get(g.id).push(g);
  }
  return [...groups.keys()].sort((a, b) => a - b).map((id) => groups.get(id));
}

export function render(main) {
  const summary = el("p", { class: "muted", role: "status" }, "waiting for the first sample…");
  const note = el("p", { class: "note", role: "alert" });
  const host = el("div", { class: "charts" });
  const gpus = el("div");
  main.append(el("h1", {}, "Performance"), summary, note, host, el("h2", {}, "GPUs"), gpus);

  let sys = [];
  let gpu = [];
  let timer = null;
  const controller = new AbortController();

  const draw = () => {
    const newest = Math.max(...sys.map(at), ...gpu.map(at));
    sys = sys.filter((s) => at(s) > newest - HOUR_MS);
    gpu = gpu.filter((g) => at(g) > newest - HOUR_MS);
    if (!sys.length) return; // the sampler's first tick is still to come
    summary.textContent = `${sys.length} sample${sys.length === 1 ? "" : "s"} over the last `
      + `${ms(at(sys.at(-1)) - at(sys[0]))} · newest at ${clock(at(sys.at(-1)))}`;
    host.replaceChildren(...hostCharts(sys));
    gpus.replaceChildren(...(gpu.length ? byGpu(gpu).map(gpuCharts) : [el("p", { class: "muted" }, "No GPU found.")]));
  };
  const off = () => {
    hideLink();
    main.replaceChildren(el("h1", {}, "Performance"), el("p", { class: "off" },
      "The performance monitor is off (", el("code", {}, "performance.disabled"), " in the config)."));
  };
  const poll = async () => {
    try {
      const after = (sys.at(-1) || gpu.at(-1) || {}).timestamp;
      const data = await readings(after, controller.signal);
      if (controller.signal.aborted) return;
      if (data === null) return off();
      note.textContent = "";
      if (data.sys_stats.length || data.gpu_stats.length || !after) {
        sys = sys.concat(data.sys_stats);
        gpu = gpu.concat(data.gpu_stats);
        draw();
      }
    } catch (error) {
      note.textContent = String(error);
    }
    if (!controller.signal.aborted) timer = setTimeout(poll, POLL_MS);
  };
  poll();
  return () => {
    controller.abort();
    clearTimeout(timer);
  };
}
