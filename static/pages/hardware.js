// Hardware: the machine llama-swap detected at startup (/api/hardware): architecture, operating
// system, environment, CPU, memory and accelerators, as cards and a table. A 503 means the detection
// failed, which the page says as such.

import { request } from "../api.js";
import { bytes, el, table } from "./dom.js";

const known = (...parts) => parts.filter((p) => p !== null && p !== undefined && p !== "").join(" ") || "unknown";

function card(title, rows) {
  return el("section", { class: "hw-card", "data-card": title.toLowerCase() }, el("h2", {}, title),
    el("dl", {}, rows.flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)])));
}

function accelerators(list) {
  if (!list.length) return el("p", { class: "muted" }, "No accelerator found.");
  return table(["#", "kind", "vendor", "model", "architecture", "memory", "driver", "power limit"],
    list.map((a) => el("tr", {},
      el("td", {}, a.index), el("td", {}, known(a.kind, a.raw_kind && `(${a.raw_kind})`)),
      el("td", {}, known(a.vendor)), el("td", {}, known(a.model)), el("td", {}, known(a.architecture)),
      el("td", {}, known(a.memory.capacity_bytes === null ? null : bytes(a.memory.capacity_bytes), a.memory.kind)),
      el("td", {}, a.driver ? known(a.driver.name, a.driver.version) : "unknown"),
      el("td", {}, a.power_limit_watts === null ? "unknown" : `${a.power_limit_watts} W`))));
}

function draw(hw) {
  const os = hw.operating_system;
  const env = hw.environment;
  const cpu = hw.cpu;
  const detector = hw.capture.detector;
  return [
    el("p", { class: "muted" }, `Detected at ${new Date(hw.captured_at).toLocaleString()}`,
      detector ? ` by ${known(detector.name, detector.version)}` : "", " (once, at startup)."),
    el("div", { class: "hw-cards" },
      card("Machine", [
        ["architecture", known(hw.architecture.name, hw.architecture.raw_name && `(${hw.architecture.raw_name})`)],
        ["operating system", known(os.name || os.family, os.version, os.raw_family && `(${os.raw_family})`)],
        ["kernel", known(os.kernel)],
        ["environment", env.name ? known(env.name, env.version, `(${env.kind.replace("_", " ")})`) : env.kind]]),
      card("CPU", [
        ["model", known(cpu.model)], ["vendor", known(cpu.vendor)], ["sockets", known(cpu.socket_count)],
        ["cores", known(cpu.physical_core_count)], ["threads", known(cpu.logical_thread_count)]]),
      card("Memory", [["capacity", bytes(hw.memory.capacity_bytes)]])),
    el("h2", {}, "Accelerators"), accelerators(hw.accelerators),
  ];
}

export function render(main) {
  const body = el("div", {}, el("p", { class: "muted" }, "loading…"));
  main.append(el("h1", {}, "Hardware"), body);
  request("api/hardware").then((hw) => body.replaceChildren(...draw(hw)), (error) => {
    const failed = error.message.startsWith("503");
    body.replaceChildren(el("p", { class: "note", role: "alert" },
      failed ? "Hardware detection failed when llama-swap started." : String(error)));
  });
}
