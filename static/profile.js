// The profiles as every page sees them (GET /api/profiles, the active one kept live from the feed's
// profileChanged), switching the active one, and the header's switcher in #profile-slot, hidden when the
// config has no profiles.

import { on, request } from "./api.js";
import { el } from "./pages/dom.js";

export const profileState = { profiles: [], active: null };
const listeners = new Set();
let changes = 0; // switches seen: a list asked for before one must not undo it

export function onProfiles(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

function publish(answer) {
  Object.assign(profileState, { profiles: answer.profiles ?? profileState.profiles, active: answer.active });
  listeners.forEach((callback) => callback(profileState));
}

function switched(answer) {
  changes++;
  publish(answer);
}

async function refresh() {
  const asked = changes;
  try {
    const answer = await request("api/profiles");
    publish(asked === changes ? answer : { ...answer, active: profileState.active });
  } catch (error) {
    console.warn("llama-swap: profiles", error);
  }
}

// name: a profile's name, or null for none. Answers the server's profile list.
async function activate(name) {
  switched(await request("api/profiles/active", { method: "PUT", body: { name } }));
}

function switcher(slot) {
  const select = el("select", { id: "profile", "aria-label": "active profile" });
  let listed = null;
  select.addEventListener("change", () => activate(select.value || null).catch((error) => {
    select.title = String(error);
    select.value = profileState.active ?? "";
  }));
  return ({ profiles, active }) => {
    slot.hidden = !profiles.length;
    const names = profiles.map((p) => p.name).join("\n");
    if (names !== listed) { // rebuilt only when the list changes: an open select is left alone otherwise
      listed = names;
      select.replaceChildren(el("option", { value: "" }, "no profile"),
        ...profiles.map((p) => el("option", { value: p.name, title: p.description || null }, p.name)));
      slot.replaceChildren(el("label", { class: "profile-switch" }, el("span", { class: "muted" }, "profile"), select));
    }
    select.value = active ?? "";
  };
}

export function startProfiles() {
  const slot = document.getElementById("profile-slot");
  slot.hidden = true;
  onProfiles(switcher(slot));
  // The feed sends a profileChanged first on every connection it cannot resume (a server restarted)
  // and on a config reload, which may change the profiles themselves: the list is asked for again then,
  // not on each modelStatus (a swap sends several).
  on("profileChanged", (data) => {
    switched({ active: data.active });
    refresh();
  });
}
