// Stats (#/stats): per model and workflow — runs, errors, tokens, cost, latency percentiles.

import { get, listOf } from "../lib/api.js";
import { h, mount, link, route, fmtDuration, fmtInt, fmtCost, headRow, errorBox, empty } from "../lib/dom.js";

export async function statsView(el) {
  const head = h("div", { class: "view-head" }, h("h1", {}, "Stats"));
  mount(el, head, empty("loading…"));
  let rows;
  try {
    rows = listOf(await get("/stats"), "models");
  } catch (err) {
    mount(el, head, errorBox(err.message));
    return null;
  }
  if (!rows.length) {
    mount(el, head, empty("No runs recorded yet."));
    return null;
  }
  const flat = rows.map(flatten);
  const maxCost = Math.max(...flat.map((r) => r.cost_usd || 0));
  mount(el, head,
    h("section", { class: "panel" },
      h("table", { class: "grid stats" },
        headRow(["model", "workflow", ...["runs", "errors", "error rate", "tokens in", "tokens out", "cache read", "reasoning",
          "cost", "p50", "p95"].map((c) => [c, "num"])]),
        h("tbody", {}, flat.map((r) => h("tr", {},
          h("td", { class: "mono" }, r.model ? link(route("#/runs", { model: r.model }), r.model) : "—"),
          h("td", {}, r.workflow ? link(`#/workflows/${encodeURIComponent(r.workflow)}`, r.workflow) : "—"),
          h("td", { class: "num" }, fmtInt(r.runs)),
          h("td", { class: "num" }, r.errors ? link(route("#/runs", { model: r.model, status: "error" }), fmtInt(r.errors)) : "0"),
          h("td", { class: "num" }, r.runs ? `${((100 * (r.errors || 0)) / r.runs).toFixed(1)}%` : "—"),
          h("td", { class: "num" }, fmtInt(r.input_tokens)),
          h("td", { class: "num" }, fmtInt(r.output_tokens)),
          h("td", { class: "num" }, fmtInt(r.cache_read_tokens)),
          h("td", { class: "num" }, fmtInt(r.reasoning_tokens)),
          h("td", { class: "num" }, costBar(r.cost_usd, maxCost), fmtCost(r.cost_usd)),
          h("td", { class: "num" }, fmtDuration(r.p50_ms)),
          h("td", { class: "num" }, fmtDuration(r.p95_ms))))))));
  return null;
}

// Token counts may come at the top level or inside `usage`; latency as p50_ms or latency_ms.p50.
function flatten(r) {
  const u = r.usage || {};
  const lat = r.latency_ms || r.latency || {};
  const pick = (k) => r[k] ?? u[k] ?? 0;
  return {
    model: r.model, workflow: r.workflow, runs: r.runs ?? r.count ?? 0, errors: r.errors ?? r.error_count ?? 0,
    input_tokens: pick("input_tokens"), output_tokens: pick("output_tokens"),
    cache_read_tokens: pick("cache_read_tokens"), reasoning_tokens: pick("reasoning_tokens"),
    cost_usd: r.cost_usd ?? null, p50_ms: r.p50_ms ?? lat.p50 ?? null, p95_ms: r.p95_ms ?? lat.p95 ?? null,
  };
}

function costBar(cost, max) {
  if (!cost || !max) return null;
  return h("span", { class: "cost-bar", style: { width: `${Math.max(2, (cost / max) * 60)}px` } });
}
