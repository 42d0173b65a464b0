// What the playground's tabs share: the page-scoped session id their requests carry, a streamed
// answer's chunks, the model picker, the runner that sends one request at a time with a Stop button,
// and the form of a tab that sends one request and shows its answer.

import { answer, request, sseEvents } from "../../api.js";
import { el } from "../dom.js";

// One id per page load, as the Go UI sends: the server shows it with the request (in flight and in the
// activity log, read from the headers `ui.activity.session_id` names) to group this page's requests.
const SESSION = { "X-Session-Id": "lspg-" + Math.random().toString(36).slice(2, 7) };

// POST to the API as the playground: with the session id; the response once it is known to be ok.
export async function post(path, body, signal) {
  const response = await request(path, { method: "POST", body, raw: true, signal, headers: SESSION });
  if (!response.ok) await answer(response); // throws with the server's message
  return response;
}

// A streamed chat completion's JSON chunks, until its [DONE]; an error event is thrown, with its message.
export async function* chunks(response) {
  for await (const { data } of sseEvents(response)) {
    if (data === null) continue;
    if (data.trim() === "[DONE]") return;
    let chunk;
    try { chunk = JSON.parse(data); } catch { continue; /* not JSON: skipped */ }
    if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
    yield chunk;
  }
}

export function modelPicker(models) {
  return el("select", { "aria-label": "model" },
    models.map((m) => el("option", { value: m.id, title: m.name }, m.id)));
}

export const waitingFor = (model) => `Waiting for ${model}… (it is started first if it is not running)`;

// run(work, waiting): calls work(signal) unless a run is under way, with `go` disabled, Stop enabled
// and `waiting` shown meanwhile; a failure is shown in `note`, an abort (Stop, abort()) is not.
export function runner(go) {
  const stop = el("button", { type: "button", disabled: true }, "Stop");
  const status = el("p", { class: "muted", role: "status" });
  const note = el("p", { class: "note", role: "alert" });
  let controller = null;
  const abort = () => controller && controller.abort();
  stop.addEventListener("click", abort);

  async function run(work, waiting = "") {
    if (controller) return;
    controller = new AbortController();
    go.disabled = true;
    stop.disabled = false;
    status.textContent = waiting;
    note.textContent = "";
    try {
      await work(controller.signal);
    } catch (error) {
      if (!controller.signal.aborted) note.textContent = error.message || String(error);
    } finally {
      controller = null;
      go.disabled = false;
      stop.disabled = true;
      status.textContent = "";
    }
  }
  return { stop, status, note, run, abort };
}

// A tab's form: the model picker and `extras` in a row, `fields` below, then `action` (the submit
// button) and Stop; the status, any failure and `output` below the form. On submit, send(model) gives
// the work to run (an async function of an AbortSignal), or nothing while the form is incomplete.
export function tabForm(models, { extras = [], fields = [], action, output, send }) {
  const model = modelPicker(models);
  const go = el("button", { type: "submit" }, action);
  const { stop, status, note, run, abort } = runner(go);
  const submit = (event) => {
    event.preventDefault();
    const work = send(model.value);
    if (work) run(work, waitingFor(model.value));
  };
  const form = el("form", { onsubmit: submit }, el("div", { class: "toolbar" }, model, extras), fields,
    el("div", { class: "toolbar" }, go, stop));
  return { panel: [form, status, note, output], leave: abort, model, run };
}
