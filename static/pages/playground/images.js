// The Images tab: a prompt and a size to POST v1/images/generations; the images the model returns
// (as base64 or as URLs) are shown below.

import { el, field } from "../dom.js";
import { post, tabForm } from "./common.js";

export const id = "images";
export const label = "Images";
export const flag = "image_generation";
export const hint = "capabilities: {in: [text], out: [image]}";

const SIZES = ["256x256", "512x512", "1024x1024"];

function source(image) {
  return image.b64_json ? `data:image/png;base64,${image.b64_json}` : image.url;
}

export function build(models) {
  const size = el("select", {}, SIZES.map((s) => el("option", { value: s, selected: s === "512x512" }, s)));
  const prompt = el("textarea", { rows: "3", placeholder: "A lighthouse at dusk, watercolour" });
  const gallery = el("div", { class: "gallery" });

  const send = (model) => {
    const text = prompt.value.trim();
    return text && (async (signal) => {
      const body = { model, prompt: text, size: size.value, n: 1 };
      const answer = await (await post("v1/images/generations", body, signal)).json();
      gallery.replaceChildren(...(answer.data || []).map((image) =>
        el("img", { src: source(image), alt: image.revised_prompt || text })));
    });
  };
  return tabForm(models, { extras: [field("size", size)], fields: [field("prompt", prompt)],
                           action: "Generate", output: gallery, send });
}
