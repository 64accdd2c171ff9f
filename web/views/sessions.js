// Sessions (#/sessions, #/sessions/<id>): agent conversations, each a sequence of runs. The detail
// view replays a session run by run: what the client sent (new messages since the previous run,
// earlier ones folded) and what the workflow answered.

import { get, listOf, seg } from "../lib/api.js";
import { h, mount, link, route, toMs, fmtTime, fmtAgo, fmtDuration, fmtInt, fmtCost, fmtUsage, statusBadge, headRow, errorBox, empty } from "../lib/dom.js";
import { requestMessages, messageList, outputView } from "../lib/messages.js";
import { runsTable } from "./runs.js";

// Auto-play step period (milliseconds): long enough to glance at each turn.
const PLAY_STEP_MS = 2500;

export async function sessionsView(el) {
  mount(el, h("div", { class: "view-head" }, h("h1", {}, "Sessions")), empty("loading sessions…"));
  let sessions;
  try {
    sessions = listOf(await get("/sessions"), "sessions");
  } catch (err) {
    mount(el, h("div", { class: "view-head" }, h("h1", {}, "Sessions")), errorBox(err.message));
    return null;
  }
  mount(el, h("div", { class: "view-head" }, h("h1", {}, "Sessions"),
    h("span", { class: "muted" }, "runs that share a session id (an agent conversation), newest first")),
  sessions.length ? sessionsTable(sessions) : empty("No sessions yet — a client that sends a session id groups its runs here."));
  return null;
}

const sessionId = (s) => s.session_id ?? s.id;
const firstOf = (...vals) => vals.find((v) => v !== undefined && v !== null);

function sessionsTable(sessions) {
  return h("table", { class: "grid" },
    headRow(["Session", ["Runs", "num"], "Models", "First run", "Last run", ["Tokens in / out", "num"], ["Cost", "num"], ["Errors", "num"]]),
    h("tbody", {}, sessions.map((s) => {
      const id = sessionId(s);
      const href = `#/sessions/${encodeURIComponent(id)}`;
      const u = s.usage || {};
      const models = firstOf(s.models, s.model ? [s.model] : null) || [];
      const last = firstOf(s.last_run_at, s.ended_at, s.last_at, s.last_started_at);
      const row = h("tr", { class: "clickable" },
        h("td", { class: "mono id-cell" }, link(href, id)),
        h("td", { class: "num" }, fmtInt(firstOf(s.runs, s.run_count, s.count))),
        h("td", {}, (Array.isArray(models) ? models : [models]).join(", ")),
        h("td", {}, fmtTime(firstOf(s.first_run_at, s.started_at, s.first_at, s.first_started_at))),
        h("td", {}, fmtTime(last), h("div", { class: "muted small" }, fmtAgo(last))),
        h("td", { class: "num" }, `${fmtInt(firstOf(u.input_tokens, s.input_tokens, 0))} / ${fmtInt(firstOf(u.output_tokens, s.output_tokens, 0))}`),
        h("td", { class: "num" }, fmtCost(s.cost_usd)),
        h("td", { class: "num" }, fmtInt(firstOf(s.errors, s.error_count, 0))));
      row.addEventListener("click", (e) => { if (!(e.target instanceof Element && e.target.closest("a"))) location.hash = href; });
      return row;
    })));
}

export async function sessionDetailView(el, params, id) {
  const head = h("div", { class: "view-head" }, h("h1", {}, "Session ", h("span", { class: "mono" }, id)), link("#/sessions", "« all sessions"));
  mount(el, head, empty("loading session…"));
  let runs;
  try {
    runs = listOf(await get(`/sessions/${seg(id)}`), "runs");
  } catch (err) {
    mount(el, head, errorBox(err.message));
    return null;
  }
  // Replay goes in conversation order, whatever order the API lists them in.
  runs = [...runs].sort((a, b) => (toMs(a.started_at) ?? 0) - (toMs(b.started_at) ?? 0));
  if (!runs.length) {
    mount(el, head, empty("This session has no runs."));
    return null;
  }
  const replay = new Replay(runs, Math.min(Math.max(Number(params.get("step") || 1), 1), runs.length) - 1, id);
  replay.table = runsTable(runs, { showSession: false });
  mount(el, head,
    h("div", { class: "muted view-note" }, `${runs.length} run${runs.length === 1 ? "" : "s"}, `,
      link(route("#/runs", { session_id: id }), "show in runs list")),
    replay.el,
    h("section", { class: "panel" }, h("h2", {}, "All runs in this session"), replay.table));
  await replay.show(replay.index);
  return () => replay.stop();
}

/** Steps through a session's runs one at a time (fetching a run's trace if the listing lacks it). */
class Replay {
  constructor(runs, index, sessionId) {
    this.runs = runs;
    this.index = index;
    this.sessionId = sessionId;
    this.details = new Map();
    this.table = null; // the session's runs table; the current step's row is highlighted
    this.timer = null;
    this.body = h("div", { class: "replay-body" });
    this.counter = h("span", { class: "step-counter" });
    this.playButton = h("button", { type: "button", onclick: () => this.togglePlay() }, "▶ play");
    this.el = h("section", { class: "panel replay" },
      h("div", { class: "replay-controls" },
        h("h2", {}, "Replay"),
        h("button", { type: "button", title: "first run", onclick: () => this.show(0) }, "« first"),
        h("button", { type: "button", title: "previous run (←)", onclick: () => this.show(this.index - 1) }, "◀ prev"),
        this.counter,
        h("button", { type: "button", title: "next run (→)", onclick: () => this.show(this.index + 1) }, "next ▶"),
        this.playButton),
      this.body);
    this.onKey = (e) => {
      if (e.target instanceof Element && e.target.closest("input, select, textarea")) return;
      if (e.key === "ArrowRight") this.show(this.index + 1);
      if (e.key === "ArrowLeft") this.show(this.index - 1);
    };
    document.addEventListener("keydown", this.onKey);
  }

  /** The run with its spans: the session listing usually carries them; else fetch the run once. */
  async detail(i) {
    const run = this.runs[i];
    if (Array.isArray(run.spans)) return run;
    if (!this.details.has(run.id)) this.details.set(run.id, get(`/runs/${seg(run.id)}`));
    return this.details.get(run.id);
  }

  async show(i) {
    if (i < 0 || i >= this.runs.length) return;
    this.index = i;
    this.counter.textContent = `run ${i + 1} of ${this.runs.length}`;
    history.replaceState(null, "", route(`#/sessions/${encodeURIComponent(this.sessionId)}`, { step: i + 1 }));
    const run = this.runs[i];
    for (const tr of this.table ? this.table.querySelectorAll("tbody tr") : []) tr.classList.toggle("selected", tr.dataset.runId === run.id);
    mount(this.body, empty("loading run…"));
    let current, previous;
    try {
      [current, previous] = await Promise.all([this.detail(i), i > 0 ? this.detail(i - 1) : null]);
    } catch (err) {
      if (this.index === i) mount(this.body, errorBox(err.message));
      return;
    }
    if (this.index !== i) return; // the reader moved on while this loaded
    const turn = conversation(current);
    const before = previous ? conversation(previous).messages.length : 0;
    const earlier = turn.messages.slice(0, Math.min(before, turn.messages.length));
    const fresh = turn.messages.slice(earlier.length);
    mount(this.body,
      h("div", { class: "replay-run" }, statusBadge(run.status), " ", link(`#/runs/${encodeURIComponent(run.id)}`, h("span", { class: "mono" }, run.id)),
        h("span", { class: "muted" }, ` · ${run.model} · ${fmtTime(run.started_at)} · ${fmtDuration(run.duration_ms)} · ${fmtUsage(run.usage)} · ${fmtCost(run.cost_usd)}`)),
      h("div", { class: "replay-columns" },
        h("div", {}, h("h3", {}, "Client sent"),
          earlier.length ? h("details", { class: "earlier" }, h("summary", {}, `${earlier.length} earlier message${earlier.length === 1 ? "" : "s"} (sent in previous runs)`), messageList(earlier)) : null,
          fresh.length ? messageList(fresh) : empty(turn.messages.length ? "no new messages" : "no messages recorded")),
        h("div", {}, h("h3", {}, "Workflow answered"),
          current.error || run.error ? errorBox(current.error || run.error) : null,
          turn.output !== null && turn.output !== undefined ? outputView(turn.output) : empty("no answer recorded"))));
    if (this.timer !== null && i === this.runs.length - 1) this.togglePlay();
  }

  togglePlay() {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
      this.playButton.textContent = "▶ play";
      return;
    }
    if (this.index >= this.runs.length - 1) this.show(0);
    this.playButton.textContent = "❚❚ pause";
    this.timer = setInterval(() => this.show(this.index + 1), PLAY_STEP_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    document.removeEventListener("keydown", this.onKey);
  }
}

/** A run's request messages and answer: from its root (workflow) span, or fields on the run itself. */
function conversation(run) {
  const spans = run.spans || [];
  const root = spans.find((s) => s.kind === "workflow") || spans.find((s) => !s.parent_id) || {};
  const input = firstOf(root.input, run.input);
  return { messages: requestMessages(input) || [], output: firstOf(root.output, run.output) };
}
