// Stats (#/stats): GET /api/stats → {since, total, models: [{model, …}], workflows: [{workflow, …}]},
// each group {runs, errors, usage{…tokens}, cost_usd, p50_ms, p95_ms}. Shown as headline totals
// and one table per grouping.

import { get } from "../lib/api.js";
import { h, mount, link, route, fmtTime, fmtDuration, fmtInt, fmtCost, headRow, errorBox, empty } from "../lib/dom.js";

// Time windows offered for the numbers (seconds back from now; 0 = everything recorded).
const RANGES = [["all", "all time", 0], ["1h", "last hour", 3600], ["24h", "last 24 hours", 86400],
  ["7d", "last 7 days", 7 * 86400], ["30d", "last 30 days", 30 * 86400]];

export async function statsView(el, params) {
  const range = RANGES.find(([key]) => key === params.get("range")) || RANGES[0];
  const picker = h("select", { "aria-label": "time range" },
    RANGES.map(([key, label]) => h("option", { value: key, selected: key === range[0] }, label)));
  picker.addEventListener("change", () => { location.hash = route("#/stats", { range: picker.value === "all" ? "" : picker.value }); });
  const head = h("div", { class: "view-head" }, h("h1", {}, "Stats"), picker);
  mount(el, head, empty("loading…"));
  let stats;
  try {
    stats = await get("/stats", { since: range[2] ? Math.floor(Date.now() / 1000 - range[2]) : "" });
  } catch (err) {
    mount(el, head, errorBox(err.message));
    return null;
  }
  const total = stats.total || {};
  if (stats.since) head.append(h("span", { class: "muted" }, `since ${fmtTime(stats.since)}`));
  if (!total.runs) {
    mount(el, head, empty(range[2] ? "No runs in this time range." : "No runs recorded yet."));
    return null;
  }
  mount(el, head,
    headline(total),
    h("section", { class: "panel" }, h("h2", {}, "By model"),
      groupTable("model", stats.models || [], (name) => link(route("#/runs", { model: name }), name),
        (name) => route("#/runs", { model: name, status: "error" }))),
    h("section", { class: "panel" }, h("h2", {}, "By workflow"),
      groupTable("workflow", stats.workflows || [], (name) => link(`#/workflows/${encodeURIComponent(name)}`, name),
        (name) => route("#/runs", { workflow: name, status: "error" }))));
  return null;
}

function headline(t) {
  const u = t.usage || {};
  const card = (label, value) => h("div", { class: "field" }, h("div", { class: "field-label" }, label), h("div", { class: "field-value big" }, value));
  return h("div", { class: "summary" },
    card("runs", fmtInt(t.runs)),
    card("errors", `${fmtInt(t.errors || 0)} (${errorRate(t)})`),
    card("tokens in", fmtInt(u.input_tokens || 0)),
    card("tokens out", fmtInt(u.output_tokens || 0)),
    card("cost", fmtCost(t.cost_usd)),
    card("latency p50", fmtDuration(t.p50_ms)),
    card("latency p95", fmtDuration(t.p95_ms)));
}

function errorRate(g) {
  return g.runs ? `${((100 * (g.errors || 0)) / g.runs).toFixed(1)}%` : "—";
}

function groupTable(key, rows, nameCell, errorsHref) {
  if (!rows.length) return empty("No runs.");
  const maxCost = Math.max(...rows.map((r) => r.cost_usd || 0));
  return h("table", { class: "grid stats" },
    headRow([key, ...["runs", "errors", "error rate", "tokens in", "tokens out", "cache read", "reasoning", "cost", "p50", "p95"]
      .map((c) => [c, "num"])]),
    h("tbody", {}, rows.map((r) => {
      const u = r.usage || {};
      const name = r[key];
      return h("tr", {},
        h("td", { class: "mono" }, name ? nameCell(name) : "—"),
        h("td", { class: "num" }, fmtInt(r.runs)),
        h("td", { class: "num" }, r.errors ? link(errorsHref(name), fmtInt(r.errors)) : "0"),
        h("td", { class: "num" }, errorRate(r)),
        h("td", { class: "num" }, fmtInt(u.input_tokens || 0)),
        h("td", { class: "num" }, fmtInt(u.output_tokens || 0)),
        h("td", { class: "num" }, fmtInt(u.cache_read_tokens || 0)),
        h("td", { class: "num" }, fmtInt(u.reasoning_tokens || 0)),
        h("td", { class: "num" }, costBar(r.cost_usd, maxCost), fmtCost(r.cost_usd)),
        h("td", { class: "num" }, fmtDuration(r.p50_ms)),
        h("td", { class: "num" }, fmtDuration(r.p95_ms)));
    })));
}

/** A bar proportional to this row's share of the largest cost (60 px at most). */
function costBar(cost, max) {
  if (!cost || !max) return null;
  return h("span", { class: "cost-bar", style: { width: `${Math.max(2, (cost / max) * 60)}px` } });
}
