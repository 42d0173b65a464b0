// The server, as the pages see it: JSON requests with the API key, and the /api/events feed.
//
// URLs are relative to where /ui/ is mounted (index.html sets <base>), so "../api/..." reaches the
// API whatever prefix a reverse proxy adds. The key (asked for once, on the first 401) is kept in
// localStorage and sent as a bearer token on every request, the event stream included: the feed is
// read with fetch, not EventSource, which cannot send headers. Requests go without credentials
// ("omit"): the server's 401 carries a Basic challenge (for curl and EventSource users), which would
// otherwise make the browser ask in its own dialog instead of ours.

const KEY = "llama-swap.api-key";

export function apiUrl(path) {
  return new URL("../" + path.replace(/^\//, ""), document.baseURI).toString();
}

function headers(key, extra = {}) {
  return key ? { ...extra, Authorization: "Bearer " + key } : extra;
}

// Called on a 401 to a request sent with `refused` (the stored key then, or null): resolves once another
// key is stored. At once when one already is (another request's prompt replaced it meanwhile); else the
// dialog asks, saying so when a key was refused (`saying`). Requests refused together share one prompt.
let asking = null;
function askForKey(refused, saying = Boolean(refused)) {
  if (localStorage.getItem(KEY) !== refused) return Promise.resolve();
  if (!asking) {
    asking = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog");
      const input = document.getElementById("key-input");
      document.getElementById("key-refused").hidden = !saying;
      input.value = "";
      dialog.addEventListener("close", () => {
        if (input.value) localStorage.setItem(KEY, input.value);
        asking = null;
        resolve();
      }, { once: true });
      dialog.showModal();
    });
  }
  return asking;
}

// The key as the Settings page manages it: whether one is stored, forgetting it (the next request refused
// asks again), and asking for another now (resolves when the dialog closes; cancelled, the key stays).
export const hasKey = () => localStorage.getItem(KEY) !== null;
export const forgetKey = () => localStorage.removeItem(KEY);
export const changeKey = () => askForKey(localStorage.getItem(KEY), false);

// ``body``: sent as JSON, or as it is when it is a FormData (multipart, the browser sets its boundary).
// Refused for its key, a request is sent again with each key the user gives, until one is accepted.
export async function request(path, { method = "GET", body, raw = false, signal, headers: extra = {} } = {}) {
  const json = body !== undefined && !(body instanceof FormData);
  for (;;) {
    signal?.throwIfAborted();
    const key = localStorage.getItem(KEY);
    const init = { method, credentials: "omit", signal,
                   headers: headers(key, json ? { ...extra, "Content-Type": "application/json" } : extra) };
    if (body !== undefined) init.body = json ? JSON.stringify(body) : body;
    const response = await fetch(apiUrl(path), init);
    if (response.status !== 401) return raw ? response : answer(response);
    await askForKey(key);
  }
}

// A response's JSON (or text); when it is an error, thrown with the server's message (the error's
// `status` and `data` say the rest).
export async function answer(response) {
  const text = await response.text();
  let data = text;
  try { data = JSON.parse(text); } catch { /* plain text */ }
  if (!response.ok) {
    const message = data && data.error ? (data.error.message || data.error) : text;
    throw Object.assign(new Error(`${response.status}: ${message}`), { status: response.status, data });
  }
  return data;
}

// ------------------------------------------------------------------------------------------ the feed

const listeners = new Map(); // message type -> set of callbacks
const stateListeners = new Set();
export const feedState = { connected: false, lastId: null, models: [], inflight: new Map(), profile: null,
                           uiConfig: null };

export function on(type, callback) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(callback);
  return () => listeners.get(type).delete(callback);
}

export function onConnection(callback) {
  stateListeners.add(callback);
  callback(feedState.connected);
  return () => stateListeners.delete(callback);
}

// `refresh` for a page that asks the server again on feed messages: called at once, then at most once per
// `wait` ms; calls meanwhile make one more when the wait is over, so the last message is always followed
// by a refresh. `.cancel()` drops the one pending (call it when the page is left).
export function throttled(refresh, wait) {
  let timer = null, again = false;
  const run = () => {
    if (timer) { again = true; return; }
    refresh();
    timer = setTimeout(() => {
      timer = null;
      if (again) { again = false; run(); }
    }, wait);
  };
  run.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return run;
}

function setConnected(connected) {
  feedState.connected = connected;
  stateListeners.forEach((callback) => callback(connected));
}

function dispatch(type, data) {
  if (type === "modelStatus") feedState.models = data;
  if (type === "profileChanged") feedState.profile = data.active;
  if (type === "uiConfig") feedState.uiConfig = data;
  if (type === "inflight") {
    // Each entry stamped with when it arrived (performance.now()): its elapsed_ms was true then.
    if (data.operation === "snapshot") {
      feedState.inflight = new Map(data.requests.map((r) => [r.id, { ...r, received: performance.now() }]));
    } else if (data.operation === "upsert") {
      feedState.inflight.set(data.request.id, { ...data.request, received: performance.now() });
    } else if (data.operation === "remove") {
      feedState.inflight.delete(data.id);
    }
  }
  (listeners.get(type) || []).forEach((callback) => callback(data));
}

// The pieces of a streamed response's text between ``separator``s, as they arrive.
export async function* pieces(response, separator) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf(separator)) >= 0) {
      yield buffer.slice(0, end);
      buffer = buffer.slice(end + separator.length);
    }
  }
}

// One Server-Sent Event from its block of lines: {id, name, data (its data: lines joined; null when it has
// none: a comment, a retry hint), raw}.
export function sseEvent(block) {
  let id = null, name = "";
  const data = [];
  for (const line of block.split("\n")) {
    const value = line.slice(line.indexOf(":") + 1).replace(/^ /, "");
    if (line.startsWith("id:")) id = value;
    else if (line.startsWith("event:")) name = value;
    else if (line.startsWith("data:")) data.push(value);
  }
  return { id, name, data: data.length ? data.join("\n") : null, raw: block };
}

// The events of a streamed response as they arrive (lines may end in \r\n).
export async function* sseEvents(response) {
  let lines = [];
  for await (const line of pieces(response, "\n")) {
    if (line.replace(/\r$/, "")) {
      lines.push(line.replace(/\r$/, ""));
    } else if (lines.length) {
      yield sseEvent(lines.join("\n"));
      lines = [];
    }
  }
}

async function readFeed() {
  const key = localStorage.getItem(KEY);
  const extra = feedState.lastId ? { "Last-Event-ID": feedState.lastId } : {};
  const response = await fetch(apiUrl("api/events"), { headers: headers(key, extra), credentials: "omit" });
  if (response.status === 401) {
    await askForKey(key);
    return;
  }
  if (!response.ok || !response.body) throw new Error("events: " + response.status);
  setConnected(true);
  for await (const { id, data } of sseEvents(response)) {
    if (data === null) continue; // a comment (heartbeat) or a retry hint
    if (id) feedState.lastId = id;
    const envelope = JSON.parse(data);
    dispatch(envelope.type, JSON.parse(envelope.data));
  }
}

export async function connectFeed() {
  for (;;) {
    try {
      await readFeed();
    } catch (error) {
      console.warn("llama-swap: event stream", error);
    }
    setConnected(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
