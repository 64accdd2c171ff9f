// DOM building and formatting helpers. Every string reaches the page as a text node or an
// attribute value set through the DOM API, never through innerHTML, so data from runs (prompts,
// model output, error messages) can never become markup.

/** h("div", {class: "x", onclick: fn}, "text", child, [more]) → Element. null/false children are skipped. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "value" || key === "checked" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace everything inside `el` with `children`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link to a hash route, e.g. link("#/runs/abc", "abc"). */
export function link(href, ...children) {
  return h("a", { href }, ...children);
}

/** "#/runs?model=a&status=ok" from ("#/runs", {model: "a", status: "ok", empty: ""}). */
export function route(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

// ---- formatting ------------------------------------------------------------------------------

/** Milliseconds since the epoch from an ISO-8601 string or Unix seconds; null when absent. */
export function toMs(t) {
  if (t === null || t === undefined || t === "") return null;
  if (typeof t === "number") return t * 1000;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** Local date-time "2024-05-01 13:04:05" (the title attribute carries the raw UTC value). */
export function fmtTime(t) {
  const ms = toMs(t);
  if (ms === null) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "3 s ago", "5 min ago" … relative to now. */
export function fmtAgo(t) {
  const ms = toMs(t);
  if (ms === null) return "";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** 0.4 ms, 12 ms, 1.25 s, 2 min 5 s. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms === 0) return "0 ms";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function fmtInt(n) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString("en-US");
}

/** Dollars with enough digits to show a sub-cent model call ($0.000123). */
export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "—";
  const v = Number(usd);
  if (v === 0) return "$0";
  if (Math.abs(v) >= 1) return `$${v.toFixed(2)}`;
  // Three significant digits in plain notation (never 1.2e-7), at least two decimals ($0.50).
  const digits = Math.min(10, 2 - Math.floor(Math.log10(Math.abs(v))));
  let s = v.toFixed(digits);
  while (s.endsWith("0") && s.length - s.indexOf(".") > 3) s = s.slice(0, -1);
  return `$${s}`;
}

/** A status pill: ok / error / skipped / cancelled / running. */
export function statusBadge(status) {
  const s = status || "running";
  return h("span", { class: `badge status-${s}` }, s);
}

export function kindBadge(kind) {
  const label = { workflow: "workflow", node: "node", model_call: "model", tool_call: "tool" }[kind] || kind;
  return h("span", { class: `badge kind-${kind}` }, label);
}

/** "in 1,200 · out 340" with cache and reasoning counts when present. */
export function fmtUsage(u) {
  if (!u) return "—";
  const parts = [`in ${fmtInt(u.input_tokens || 0)}`, `out ${fmtInt(u.output_tokens || 0)}`];
  if (u.cache_read_tokens) parts.push(`cache↓ ${fmtInt(u.cache_read_tokens)}`);
  if (u.cache_write_tokens) parts.push(`cache↑ ${fmtInt(u.cache_write_tokens)}`);
  if (u.reasoning_tokens) parts.push(`reason ${fmtInt(u.reasoning_tokens)}`);
  return parts.join(" · ");
}

/** Shorten long text for a table cell; the full text stays in the title attribute. */
export function clip(text, max = 80) {
  const s = text === null || text === undefined ? "" : String(text);
  return s.length > max ? h("span", { title: s }, s.slice(0, max - 1) + "…") : s;
}

/** A table header row; a column given as [label, "num"] is right-aligned like its numbers. */
export function headRow(columns) {
  return h("thead", {}, h("tr", {}, columns.filter(Boolean).map((c) =>
    Array.isArray(c) ? h("th", { class: c[1] }, c[0]) : h("th", {}, c))));
}

export function errorBox(message) {
  return h("div", { class: "error-box", role: "alert" }, message);
}

export function empty(message) {
  return h("div", { class: "empty" }, message);
}
