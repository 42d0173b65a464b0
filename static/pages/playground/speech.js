// The Speech tab: text and a voice to POST v1/audio/speech; the audio that comes back plays in an
// <audio> element. The voices a model offers are listed on demand (GET v1/audio/voices?model=…),
// since asking starts the model; any voice name can be typed.

import { request } from "../../api.js";
import { el, field } from "../dom.js";
import { post, tabForm, waitingFor } from "./common.js";

export const id = "speech";
export const label = "Speech";
export const flag = "audio_speech";
export const hint = "capabilities: {in: [text], out: [audio]}";

const OPENAI_VOICES = ["alloy", "echo", "fable", "onyx", "nova", "shimmer"];

// A voices answer is a list, or {voices: [...]}, of names or of {id, name}.
function voiceNames(answer) {
  const list = Array.isArray(answer) ? answer : (answer && answer.voices) || [];
  return list.map((v) => (typeof v === "string" ? v : v.id || v.name)).filter(Boolean);
}

export function build(models) {
  const choices = el("datalist", { id: "speech-voices" });
  const voice = el("input", { list: "speech-voices", value: OPENAI_VOICES[0], size: "10" });
  const listVoices = el("button", { type: "button" }, "List voices");
  const text = el("textarea", { rows: "3", placeholder: "Text to speak" });
  const player = el("div", { class: "player" });
  let url = null;

  const send = (model) => {
    const input = text.value.trim();
    return input && (async (signal) => {
      const body = { model, input, voice: voice.value.trim() };
      const audio = await (await post("v1/audio/speech", body, signal)).blob();
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(audio);
      player.replaceChildren(el("audio", { controls: true, src: url }),
        el("a", { href: url, download: `speech-${body.voice}` }, "Download"));
    });
  };
  const tab = tabForm(models, { extras: [field("voice", voice), choices, listVoices], fields: [field("text", text)],
                                action: "Speak", output: player, send });

  const offer = (names) => choices.replaceChildren(...names.map((name) => el("option", { value: name })));
  offer(OPENAI_VOICES);
  listVoices.addEventListener("click", () => {
    const model = tab.model.value;
    tab.run(async (signal) => {
      const names = voiceNames(await request(`v1/audio/voices?model=${encodeURIComponent(model)}`, { signal }));
      offer(names);
      if (names.length && !names.includes(voice.value)) voice.value = names[0];
    }, waitingFor(model));
  });
  const leave = () => {
    tab.leave();
    if (url) URL.revokeObjectURL(url);
  };
  return { panel: tab.panel, leave };
}
