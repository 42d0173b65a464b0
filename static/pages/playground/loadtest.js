// The Load test tab (llama-swap #805): one prompt sent to one model as `requests` streamed chat completions,
// `concurrency` of them at a time. While they run: a progress bar and line (done, failed, running, time),
// and each request's row as it ends. At the end: how many were ok, failed or stopped, and the p50 and p95
// of the time to first token, the total time and the generation speed. Stop aborts what is running and
// starts nothing more.

import { el, field, ms, rate, table } from "../dom.js";
import { chunks, modelPicker, post, runner, waitingFor } from "./common.js";

export const id = "loadtest";
export const label = "Load test";
export const flag = null; // offered as Chat is: the requests are chat completions
export const hint = "capabilities: {in: [text], out: [text]}";

const PROMPT = "Write a few sentences about the history of computing.";
const RULE = "━━━━━"; // llama-swap's loading banner (sendLoadingState) is framed by two: not the model's tokens

// Whether `piece` of reasoning text, after `before`, is the model's (not the loading banner's).
function modelsOwn(before, piece) {
  return !(before + piece).startsWith(RULE) || before.split(RULE).length >= 3;
}

// One request, timed: {ttft, total, tokens, speed, error} (times in ms; speed: tokens a second after the
// first; error: null, or "stopped" when it was aborted). Tokens as the usage reports them, else counted
// a chunk each.
async function measure(body, signal) {
  const start = performance.now();
  const result = { ttft: null, total: null, tokens: 0, speed: null, error: null };
  let reasoning = "", counted = 0, reported = null;
  try {
    const response = await post("v1/chat/completions", body, signal);
    for await (const chunk of chunks(response)) {
      const delta = chunk.choices?.[0]?.delta || {};
      const own = Boolean(delta.content) || (Boolean(delta.reasoning_content) && modelsOwn(reasoning, delta.reasoning_content));
      reasoning += delta.reasoning_content || "";
      if (own) {
        counted += 1;
        result.ttft ??= performance.now() - start;
      }
      if (chunk.usage?.completion_tokens !== undefined) reported = chunk.usage.completion_tokens;
    }
  } catch (error) {
    result.error = signal.aborted ? "stopped" : error.message || String(error);
  }
  result.total = performance.now() - start;
  result.tokens = reported ?? counted;
  const generating = result.ttft === null ? 0 : result.total - result.ttft;
  if (!result.error && result.tokens > 1 && generating > 0) result.speed = (result.tokens - 1) / (generating / 1000);
  return result;
}

// The nearest-rank percentile `p` of `values` (null when there are none).
function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

function numberInput(label, value, max) {
  return el("input", { type: "number", min: 1, max, value, required: true, "aria-label": label, class: "count" });
}

function resultRow(r) {
  return el("tr", { "data-request": r.index, class: r.error ? "failed" : null },
    el("td", {}, r.index), el("td", { class: r.error === "stopped" ? "muted" : r.error ? "bad" : "ok" }, r.error || "ok"),
    el("td", {}, ms(r.ttft)), el("td", {}, ms(r.total)), el("td", {}, r.tokens), el("td", {}, rate(r.speed)));
}

const failures = (results) => results.filter((r) => r.error && r.error !== "stopped").length;

function summary(results, asked, wall) {
  const ok = results.filter((r) => !r.error);
  const failed = failures(results);
  const stopped = asked - ok.length - failed; // aborted, or never started
  const line = el("p", { class: "loadtest-summary", role: "status" },
    el("b", {}, `${ok.length} ok`), ` · ${failed} failed`, stopped ? ` · ${stopped} stopped` : "",
    ` · ${ms(wall)} in all`);
  const measures = [["time to first token", (r) => r.ttft, ms], ["total time", (r) => r.total, ms],
                    ["generation speed", (r) => r.speed, rate]];
  const stats = table(["", "p50", "p95"], measures.map(([name, of, show]) => {
    const values = ok.map(of).filter((v) => v !== null);
    return el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, show(percentile(values, 50))),
      el("td", {}, show(percentile(values, 95))));
  }), { class: "loadtest-stats", "aria-label": "percentiles of the requests that succeeded" });
  return [line, stats];
}

export function build(models) {
  const model = modelPicker(models);
  const prompt = el("textarea", { rows: "3", "aria-label": "prompt" }, PROMPT);
  const requests = numberInput("requests", 10, 1000);
  const concurrency = numberInput("concurrency", 2, 64);
  const maxTokens = numberInput("max tokens", 128, 32768);
  const go = el("button", { type: "submit" }, "Run");
  const { stop, status, note, run, abort } = runner(go);
  const bar = el("progress", { value: 0, max: 1, "aria-label": "load test progress" });
  const progress = el("p", { class: "muted", role: "status" });
  const meter = el("div", { class: "loadtest-progress", hidden: true }, bar, progress);
  const outcome = el("div", { class: "loadtest-outcome" });
  const rows = el("div");

  const start = (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    const asked = Number(requests.value), width = Number(concurrency.value);
    if (!text || !(asked >= 1) || !(width >= 1)) return;
    const body = { model: model.value, messages: [{ role: "user", content: text }], stream: true,
                   max_tokens: Number(maxTokens.value) || undefined, stream_options: { include_usage: true } };
    run(async (signal) => {
      const results = [];
      const began = performance.now();
      let next = 0, running = 0;
      const show = () => {
        const failed = failures(results);
        bar.max = asked;
        bar.value = results.length;
        progress.textContent = `${results.length} of ${asked} done · ${failed} failed · ${running} running · `
          + ms(performance.now() - began);
      };
      const redraw = () => {
        show();
        const ordered = [...results].sort((a, b) => a.index - b.index);
        rows.replaceChildren(table(["#", "result", "first token", "total", "tokens", "gen t/s"],
          ordered.map(resultRow), { class: "loadtest-requests" }));
      };
      const worker = async () => {
        while (next < asked && !signal.aborted) {
          const index = ++next;
          running += 1;
          const result = await measure(body, signal);
          running -= 1;
          results.push({ ...result, index });
          redraw();
        }
      };
      outcome.replaceChildren();
      meter.hidden = false;
      redraw();
      const ticker = setInterval(show, 250);
      try {
        await Promise.all(Array.from({ length: Math.min(width, asked) }, worker));
      } finally {
        clearInterval(ticker);
        show();
        outcome.replaceChildren(...summary(results, asked, performance.now() - began));
      }
    }, waitingFor(model.value));
  };

  const form = el("form", { onsubmit: start },
    el("div", { class: "toolbar" }, model, field("requests", requests), field("concurrency", concurrency),
      field("max tokens", maxTokens)),
    field("prompt", prompt), el("div", { class: "toolbar" }, go, stop));
  return { panel: [form, status, note, meter, outcome, rows],
           leave: abort };
}
