// The Transcription tab: an audio file chosen here is sent (multipart: file, model) to
// POST v1/audio/transcriptions; the text the model heard is shown.

import { el, field } from "../dom.js";
import { post, tabForm } from "./common.js";

export const id = "transcription";
export const label = "Transcription";
export const flag = "audio_transcriptions";
export const hint = "capabilities: {in: [audio], out: [text]}";

export function build(models) {
  const file = el("input", { type: "file", accept: "audio/*,video/*" });
  const transcript = el("div", { class: "msg transcript", hidden: true });

  const send = (model) => {
    const chosen = file.files[0];
    return chosen && (async (signal) => {
      const form = new FormData();
      form.append("model", model);
      form.append("file", chosen, chosen.name);
      const answer = await (await post("v1/audio/transcriptions", form, signal)).text();
      let heard = answer;
      try { heard = JSON.parse(answer).text ?? answer; } catch { /* text, srt or vtt: shown as it is */ }
      transcript.textContent = heard;
      transcript.hidden = false;
    });
  };
  return tabForm(models, { extras: [field("audio file", file)], action: "Transcribe", output: transcript, send });
}
