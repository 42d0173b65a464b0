// The Rerank tab: a query and documents (one a line) to POST v1/rerank; the documents come back
// ordered by the model's relevance score, each with its score.

import { el, field } from "../dom.js";
import { post, tabForm } from "./common.js";

export const id = "rerank";
export const label = "Rerank";
export const flag = "reranker";
export const hint = "capabilities: {reranker: true}";

export function build(models) {
  const query = el("input", { type: "text", placeholder: "What are you looking for?" });
  const documents = el("textarea", { rows: "5", placeholder: "One document a line" });
  const ranked = el("ol", { class: "ranked" });

  const send = (model) => {
    const docs = documents.value.split("\n").map((line) => line.trim()).filter(Boolean);
    const asked = query.value.trim();
    return asked && docs.length && (async (signal) => {
      const answer = await (await post("v1/rerank", { model, query: asked, documents: docs }, signal)).json();
      const results = (answer.results || [])
        .map((r) => ({ doc: docs[r.index], score: r.relevance_score ?? r.score ?? 0 }))
        .sort((a, b) => b.score - a.score);
      ranked.replaceChildren(...results.map((r) =>
        el("li", {}, el("span", { class: "score" }, r.score.toFixed(3)), el("span", { class: "doc" }, r.doc))));
    });
  };
  return tabForm(models, { fields: [field("query", query), field("documents", documents)],
                           action: "Rerank", output: ranked, send });
}
