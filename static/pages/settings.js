// Settings: what this browser keeps for the UI (localStorage, llama-swap.*): the theme (light, dark or the
// system's, in sync with the header's toggle), the API key (set or not; forget it, or give another), whether
// the Models page shows capability tags; and the server's version (/api/version).

import { changeKey, forgetKey, hasKey, request } from "../api.js";
import { chooseTheme, onTheme, themeChoice } from "../theme.js";
import { el } from "./dom.js";
import { showTags, tagsShown } from "./modelparts.js";

const THEMES = [["light", "Light"], ["dark", "Dark"], ["system", "System"]];

function section(title, ...content) {
  return el("section", { class: "setting", "aria-label": title }, el("h2", {}, title), ...content);
}

function themeChooser() {
  const radios = THEMES.map(([value]) => el("input", { type: "radio", name: "theme", value,
                                                        onchange: () => chooseTheme(value) }));
  const check = (choice) => radios.forEach((radio) => { radio.checked = radio.value === choice; });
  check(themeChoice());
  const node = el("fieldset", { class: "choices" }, el("legend", {}, "Theme"),
    THEMES.map(([, label], i) => el("label", {}, radios[i], ` ${label}`)));
  return { node, leave: onTheme(check) };
}

function keySetting() {
  const state = el("p", { role: "status" });
  const forget = el("button", { type: "button" }, "Forget key");
  const draw = () => {
    state.replaceChildren("API key: ", el("b", {}, hasKey() ? "set" : "not set"),
      el("span", { class: "muted" }, hasKey() ? " (kept in this browser)" : " (asked for when the server wants one)"));
    forget.disabled = !hasKey();
  };
  forget.addEventListener("click", () => { forgetKey(); draw(); });
  const change = el("button", { type: "button", onclick: () => changeKey().then(draw) }, "Change key");
  draw();
  return [state, el("div", { class: "toolbar" }, change, forget)];
}

function tagsSetting() {
  const box = el("input", { type: "checkbox", checked: tagsShown(), onchange: () => showTags(box.checked) });
  return el("label", {}, box, " Show capability tags on the Models page");
}

function version() {
  const about = el("dl", { class: "details" }, el("dt", {}, "version"), el("dd", { class: "muted" }, "loading…"));
  request("api/version").then((v) => about.replaceChildren(...[["version", v.version], ["commit", v.commit],
    ["built", v.build_date]].flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value || "unknown")])),
  (error) => about.replaceChildren(el("dt", {}, "version"), el("dd", { class: "note" }, String(error))));
  return about;
}

export function render(main) {
  const theme = themeChooser();
  main.append(el("h1", {}, "Settings"),
    el("p", { class: "muted" }, "Kept in this browser only."),
    section("Appearance", theme.node),
    section("API key", ...keySetting()),
    section("Models page", tagsSetting()),
    section("Server", version()));
  return theme.leave;
}
