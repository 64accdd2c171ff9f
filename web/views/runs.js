// Runs view (#/runs): the newest runs first, filtered by model / status / session / workflow,
// paged with the API's `next` cursor (passed back as `before`), optionally refreshed every few seconds.

import { get, listOf } from "../lib/api.js";
import { h, mount, link, route, fmtTime, fmtAgo, fmtDuration, fmtInt, fmtCost, statusBadge, clip, headRow, errorBox, empty } from "../lib/dom.js";

// Rows per page: enough to fill a screen, small enough to render instantly.
const PAGE_SIZE = 50;
// Auto-refresh period (milliseconds): quick enough to watch live traffic, light on the host.
const REFRESH_MS = 3000;
const REFRESH_KEY = "flowbase.runs.autorefresh";
const STATUSES = ["ok", "error", "cancelled", "skipped"];

/** Render the runs list into `el`; returns a function that stops its timer. */
export async function runsView(el, params) {
  const filters = {
    model: params.get("model") || "", status: params.get("status") || "",
    session_id: params.get("session_id") || "", workflow: params.get("workflow") || "",
  };
  const before = params.get("before") || "";
  const tableBox = h("div", { class: "table-box" }, empty("loading runs…"));
  const pager = h("div", { class: "pager" });
  const refreshed = h("span", { class: "muted small" });
  let timer = null;

  const modelSelect = h("select", { name: "model", "aria-label": "model" }, h("option", { value: "" }, "all models"));
  if (filters.model) modelSelect.append(h("option", { value: filters.model, selected: true }, filters.model));
  const statusSelect = h("select", { name: "status", "aria-label": "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
  const sessionInput = h("input", { name: "session_id", placeholder: "session id", value: filters.session_id, size: 18 });
  const workflowInput = h("input", { name: "workflow", placeholder: "workflow", value: filters.workflow, size: 14 });
  const apply = () => {
    location.hash = route("#/runs", { model: modelSelect.value, status: statusSelect.value,
      session_id: sessionInput.value.trim(), workflow: workflowInput.value.trim() });
  };
  modelSelect.addEventListener("change", apply);
  statusSelect.addEventListener("change", apply);
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    modelSelect, statusSelect, sessionInput, workflowInput, h("button", { type: "submit" }, "Filter"),
    Object.values(filters).some(Boolean) ? link("#/runs", "clear") : null);

  const auto = h("input", { type: "checkbox", id: "autorefresh", checked: localStorage.getItem(REFRESH_KEY) === "1" });
  auto.addEventListener("change", () => {
    localStorage.setItem(REFRESH_KEY, auto.checked ? "1" : "0");
    schedule();
  });

  mount(el,
    h("div", { class: "view-head" }, h("h1", {}, "Runs"),
      h("label", { class: "toggle" }, auto, " auto-refresh"), refreshed),
    form, tableBox, pager);

  // The model filter lists what is published now; a failure here only leaves the list short.
  get("/published").then((pub) => {
    const models = new Set((pub && pub.models || []).map((m) => m.model));
    models.delete(filters.model);
    for (const m of [...models].sort()) modelSelect.append(h("option", { value: m }, m));
  }).catch(() => {});

  let stopped = false;
  async function load() {
    try {
      const body = await get("/runs", { ...filters, limit: PAGE_SIZE, before });
      if (stopped) return;
      const runs = listOf(body, "runs");
      // The API names the next page's cursor; without it, a full page means there may be more.
      const next = body && "next" in body ? body.next : (runs.length >= PAGE_SIZE ? runs[runs.length - 1].id : null);
      mount(tableBox, runs.length ? runsTable(runs) : empty(before ? "No older runs."
        : Object.values(filters).some(Boolean) ? "No runs match these filters."
          : "No runs yet — call a published model on /v1 and it shows up here."));
      mount(pager,
        before ? link(route("#/runs", filters), "« newest") : null,
        next ? link(route("#/runs", { ...filters, before: next }), "older »") : null);
      refreshed.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (!stopped) mount(tableBox, errorBox(err.message));
    }
  }

  function schedule() {
    clearInterval(timer);
    timer = auto.checked ? setInterval(load, REFRESH_MS) : null;
  }

  await load();
  schedule();
  return () => { stopped = true; clearInterval(timer); };
}

/** The runs table; also used by the session view. */
export function runsTable(runs, { showSession = true } = {}) {
  return h("table", { class: "grid runs" },
    headRow(["Status", "Run", "Model", "Workflow", "Protocol", "Started", ["Duration", "num"], ["Tokens in / out", "num"],
      ["Cost", "num"], showSession ? "Session" : null, "Error"]),
    h("tbody", {}, runs.map((r) => runRow(r, showSession))));
}

function runRow(r, showSession) {
  const u = r.usage || {};
  const href = `#/runs/${encodeURIComponent(r.id)}`;
  const row = h("tr", { class: `clickable status-row-${r.status}`, dataset: { runId: r.id } },
    h("td", {}, statusBadge(r.status)),
    h("td", { class: "mono id-cell" }, link(href, r.id)),
    h("td", {}, r.model),
    h("td", {}, r.workflow, r.workflow_version !== undefined ? h("span", { class: "muted" }, ` v${r.workflow_version}`) : null),
    h("td", {}, r.protocol || "", r.stream ? h("span", { class: "badge subtle" }, "stream") : null),
    h("td", { title: r.started_at || "" }, fmtTime(r.started_at), h("div", { class: "muted small" }, fmtAgo(r.started_at))),
    h("td", { class: "num" }, fmtDuration(r.duration_ms)),
    h("td", { class: "num" }, `${fmtInt(u.input_tokens || 0)} / ${fmtInt(u.output_tokens || 0)}`),
    h("td", { class: "num" }, fmtCost(r.cost_usd)),
    showSession ? h("td", { class: "mono" }, r.session_id ? link(`#/sessions/${encodeURIComponent(r.session_id)}`, clip(r.session_id, 14)) : "") : null,
    h("td", { class: "error-cell" }, clip(r.error, 60)));
  row.addEventListener("click", (e) => {
    if (!(e.target instanceof Element && e.target.closest("a"))) location.hash = href;
  });
  return row;
}
