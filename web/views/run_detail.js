// Run detail (#/runs/<id>): the run's span tree as a waterfall (bars placed by start time and
// duration relative to the run), a token bill by node and by model, and the selected span's
// input, output and error.

import { get, seg } from "../lib/api.js";
import { h, mount, link, route, toMs, fmtTime, fmtDuration, fmtInt, fmtCost, fmtUsage, statusBadge, kindBadge, headRow, errorBox, empty } from "../lib/dom.js";
import { jsonView } from "../lib/json_view.js";
import { conversationView } from "../lib/messages.js";

const USAGE_KEYS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"];

export async function runDetailView(el, params, runId) {
  mount(el, empty("loading run…"));
  let run;
  try {
    run = await get(`/runs/${seg(runId)}`);
  } catch (err) {
    mount(el, h("div", { class: "view-head" }, h("h1", {}, "Run"), link("#/runs", "« all runs")), errorBox(err.message));
    return null;
  }
  const spans = (run.spans || []).map((s) => ({ ...s, _start: toMs(s.started_at), _end: toMs(s.ended_at) }));
  const tree = buildTree(spans);
  const clock = timeBase(run, spans);
  const detail = h("section", { class: "panel span-detail" });
  const waterfall = h("div", { class: "waterfall" });
  const collapsed = new Set();
  let selected = spans.find((s) => s.id === params.get("span")) || tree.roots[0] || null;

  const select = (span) => {
    selected = span;
    // Keep the selection in the address without re-rendering the view (no hashchange event).
    history.replaceState(null, "", route(`#/runs/${encodeURIComponent(run.id)}`, { span: span.id }));
    drawWaterfall();
    mount(detail, spanDetail(span, clock));
  };
  const toggle = (span) => {
    if (collapsed.has(span.id)) collapsed.delete(span.id); else collapsed.add(span.id);
    drawWaterfall();
  };
  function drawWaterfall() {
    mount(waterfall, waterfallHead(clock), visibleRows(tree, collapsed).map(({ span, depth }) =>
      spanRow(span, depth, clock, tree.children.get(span.id) || [], collapsed.has(span.id), span === selected, select, toggle)));
  }

  drawWaterfall();
  mount(detail, selected ? spanDetail(selected, clock) : empty("This run recorded no spans."));
  mount(el,
    h("div", { class: "view-head" }, h("h1", {}, "Run ", h("span", { class: "mono" }, run.id)), link("#/runs", "« all runs")),
    runSummary(run),
    run.error ? errorBox(run.error) : null,
    h("div", { class: "run-layout" },
      h("div", { class: "run-main" },
        h("section", { class: "panel" }, h("h2", {}, "Timeline"), spans.length ? waterfall : empty("No spans recorded.")),
        tokenBill(spans, tree)),
      detail));
  return null;
}

function runSummary(run) {
  const field = (label, ...value) => h("div", { class: "field" }, h("div", { class: "field-label" }, label), h("div", { class: "field-value" }, ...value));
  return h("div", { class: "summary" },
    field("status", statusBadge(run.status)),
    field("model", link(route("#/runs", { model: run.model }), run.model)),
    field("workflow", link(`#/workflows/${encodeURIComponent(run.workflow)}`, run.workflow), ` v${run.workflow_version ?? "?"}`),
    field("protocol", run.protocol || "—", run.stream ? " · stream" : ""),
    field("started", h("span", { title: run.started_at || "" }, fmtTime(run.started_at))),
    field("duration", fmtDuration(run.duration_ms ?? duration(toMs(run.started_at), toMs(run.ended_at)))),
    field("tokens", fmtUsage(run.usage)),
    field("cost", fmtCost(run.cost_usd)),
    run.session_id ? field("session", link(`#/sessions/${encodeURIComponent(run.session_id)}`, h("span", { class: "mono" }, run.session_id))) : null);
}

// ---- the span tree --------------------------------------------------------------------------

/** Children by parent id, each list in start order; roots are spans whose parent is absent. */
function buildTree(spans) {
  const byId = new Map(spans.map((s) => [s.id, s]));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    if (s.parent_id && byId.has(s.parent_id) && s.parent_id !== s.id) {
      if (!children.has(s.parent_id)) children.set(s.parent_id, []);
      children.get(s.parent_id).push(s);
    } else {
      roots.push(s);
    }
  }
  const order = (a, b) => (a._start ?? 0) - (b._start ?? 0);
  roots.sort(order);
  for (const list of children.values()) list.sort(order);
  return { byId, children, roots };
}

/** Depth-first rows, skipping the descendants of collapsed spans (and guarding against cycles). */
function visibleRows(tree, collapsed) {
  const rows = [];
  const seen = new Set();
  const walk = (span, depth) => {
    if (seen.has(span.id)) return;
    seen.add(span.id);
    rows.push({ span, depth });
    if (!collapsed.has(span.id)) for (const c of tree.children.get(span.id) || []) walk(c, depth + 1);
  };
  tree.roots.forEach((r) => walk(r, 0));
  return rows;
}

/** The run's time window: earliest start to latest end over the run and all its spans. */
function timeBase(run, spans) {
  const starts = [toMs(run.started_at), ...spans.map((s) => s._start)].filter((v) => v !== null);
  const ends = [toMs(run.ended_at), ...spans.map((s) => s._end ?? s._start)].filter((v) => v !== null);
  const start = starts.length ? Math.min(...starts) : 0;
  const end = ends.length ? Math.max(...ends) : start;
  return { start, total: Math.max(end - start, 0.001) };
}

function duration(start, end) {
  return start !== null && end !== null ? end - start : null;
}

function spanDuration(span) {
  return span.duration_ms ?? duration(span._start, span._end);
}

function waterfallHead(clock) {
  // Grid lines mark quarters (CSS); labels only at 0, half and end so they never collide.
  const ticks = [0, 0.5, 1].map((f) =>
    h("span", { class: "tick", style: { left: `${f * 100}%` } }, f === 0 ? "0" : fmtDuration(f * clock.total)));
  return h("div", { class: "wf-row wf-head" },
    h("div", { class: "wf-name" }, "span"), h("div", { class: "wf-track ticks" }, ticks),
    h("div", { class: "wf-num" }, "duration"), h("div", { class: "wf-num" }, "tokens in / out"), h("div", { class: "wf-num" }, "cost"));
}

function spanRow(span, depth, clock, kids, isCollapsed, isSelected, select, toggle) {
  const offset = span._start === null ? 0 : (span._start - clock.start) / clock.total;
  const width = (spanDuration(span) ?? 0) / clock.total;
  const caret = kids.length
    ? h("button", { class: "caret", type: "button", title: isCollapsed ? "expand" : "collapse",
      onclick: (e) => { e.stopPropagation(); toggle(span); } }, isCollapsed ? "▸" : "▾")
    : h("span", { class: "caret" });
  const u = span.usage;
  const row = h("div", { class: `wf-row kind-row-${span.kind}${isSelected ? " selected" : ""}`, tabindex: 0, role: "button",
    dataset: { spanId: span.id } },
    h("div", { class: "wf-name", style: { paddingLeft: `${depth * 16}px` }, title: span.name },
      caret, kindBadge(span.kind), " ", h("span", { class: "span-name" }, span.name),
      span.status !== "ok" ? h("span", {}, " ", statusBadge(span.status)) : null),
    h("div", { class: "wf-track" },
      h("div", { class: `wf-bar bar-${span.status} bar-kind-${span.kind}`,
        style: { left: `${Math.min(offset, 1) * 100}%`, width: `${Math.max(Math.min(width, 1 - offset), 0) * 100}%` },
        title: `${span.name}: starts at +${fmtDuration(span._start === null ? null : span._start - clock.start)}, takes ${fmtDuration(spanDuration(span))}` })),
    h("div", { class: "wf-num" }, fmtDuration(spanDuration(span))),
    h("div", { class: "wf-num" }, u ? `${fmtInt(u.input_tokens || 0)} / ${fmtInt(u.output_tokens || 0)}` : ""),
    h("div", { class: "wf-num" }, span.cost_usd !== null && span.cost_usd !== undefined ? fmtCost(span.cost_usd) : ""));
  row.addEventListener("click", () => select(span));
  row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(span); } });
  return row;
}

// ---- the selected span ------------------------------------------------------------------------

function spanDetail(span, clock) {
  const meta = [
    ["id", h("span", { class: "mono" }, span.id)],
    ["started", span._start === null ? "—" : `${fmtTime(span.started_at)} (+${fmtDuration(span._start - clock.start)})`],
    ["duration", fmtDuration(spanDuration(span))],
    span.model || span.provider ? ["model", [span.provider, span.model].filter(Boolean).join(" / ")] : null,
    span.usage ? ["tokens", fmtUsage(span.usage)] : null,
    span.cost_usd !== null && span.cost_usd !== undefined ? ["cost", fmtCost(span.cost_usd)] : null,
  ].filter(Boolean);
  return h("div", {},
    h("h2", {}, kindBadge(span.kind), " ", span.name, " ", statusBadge(span.status)),
    h("dl", { class: "meta" }, meta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    span.error ? h("div", {}, h("h3", {}, "Error"), errorBox(span.error)) : null,
    h("h3", {}, "Input"), ioView(span.input, "input"),
    h("h3", {}, "Output"), ioView(span.output, "output"));
}

/** A request renders as its conversation, an answer as text + tool calls (raw JSON folded below); anything else as JSON. */
function ioView(value, label) {
  if (value === null || value === undefined) return h("div", { class: "muted" }, "none");
  const readable = conversationView(value);
  if (!readable) return jsonView(value, { label });
  return h("div", {}, readable,
    h("details", { class: "raw" }, h("summary", {}, `raw ${label} JSON`), jsonView(value, { label })));
}

// ---- the token bill ----------------------------------------------------------------------------

/** Who consumed the tokens: model_call spans where recorded, else the node's own usage (never both). */
function billEntries(spans, tree) {
  const entries = [];
  const nodeOf = (span) => {
    for (let s = span; s; s = tree.byId.get(s.parent_id)) if (s.kind === "node") return s;
    return null;
  };
  const hasCalls = new Set();
  for (const s of spans) {
    if (s.kind === "model_call" && s.usage) {
      const node = nodeOf(s);
      if (node) hasCalls.add(node.id);
      entries.push({ node: node ? node.name : s.name, model: modelKey(s, node), usage: s.usage, cost: s.cost_usd });
    }
  }
  for (const s of spans) {
    if (s.kind === "node" && s.usage && !hasCalls.has(s.id)) {
      entries.push({ node: s.name, model: modelKey(s, s), usage: s.usage, cost: s.cost_usd });
    }
  }
  return entries;
}

function modelKey(span, node) {
  const model = span.model || (node && node.model);
  const provider = span.provider || (node && node.provider);
  if (!model && !provider) return "(unknown)";
  return [provider, model].filter(Boolean).join(" / ");
}

/** Sum entries into rows by `keyOf(entry)`, biggest token count first. */
function group(entries, keyOf) {
  const rows = new Map();
  for (const e of entries) {
    const k = keyOf(e);
    if (!rows.has(k)) rows.set(k, { name: k, calls: 0, cost: null, ...Object.fromEntries(USAGE_KEYS.map((u) => [u, 0])) });
    const row = rows.get(k);
    row.calls += 1;
    for (const u of USAGE_KEYS) row[u] += e.usage[u] || 0;
    if (e.cost !== null && e.cost !== undefined) row.cost = (row.cost || 0) + e.cost;
  }
  return [...rows.values()].sort((a, b) => (b.input_tokens + b.output_tokens) - (a.input_tokens + a.output_tokens));
}

function tokenBill(spans, tree) {
  const entries = billEntries(spans, tree);
  if (!entries.length) return h("section", { class: "panel" }, h("h2", {}, "Token bill"), empty("No token usage recorded in this run."));
  const total = group(entries, () => "total")[0];
  const table = (title, rows) => h("table", { class: "grid bill" },
    headRow([title, ...["calls", "input", "output", "cache read", "cache write", "reasoning", "cost"].map((c) => [c, "num"])]),
    h("tbody", {}, rows.map((r) => billRow(r, r.name))),
    h("tfoot", {}, billRow(total, "total")));
  return h("section", { class: "panel" }, h("h2", {}, "Token bill"),
    h("div", { class: "bill-tables" }, table("by node", group(entries, (e) => e.node)), table("by model", group(entries, (e) => e.model))));
}

function billRow(r, name) {
  return h("tr", {}, h("td", {}, name), h("td", { class: "num" }, fmtInt(r.calls)),
    USAGE_KEYS.map((k) => h("td", { class: "num" }, fmtInt(r[k]))), h("td", { class: "num" }, fmtCost(r.cost)));
}
