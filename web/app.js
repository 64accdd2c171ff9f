// flowbase web UI: a hash router over small views. Plain ES modules served from /ui/ — no build
// step, no external assets. Routes:
//   #/runs  #/runs/<id>  #/sessions  #/sessions/<id>  #/workflows  #/workflows/<name>  #/stats
// Query parameters live inside the hash (#/runs?model=m&status=error) so every view is linkable.

import { h, mount, errorBox } from "./lib/dom.js";
import { runsView } from "./views/runs.js";
import { runDetailView } from "./views/run_detail.js";
import { sessionsView, sessionDetailView } from "./views/sessions.js";
import { workflowsView, workflowDetailView } from "./views/workflows.js";
import { statsView } from "./views/stats.js";

const ROUTES = [
  [/^runs$/, runsView, "runs"],
  [/^runs\/(.+)$/, runDetailView, "runs"],
  [/^sessions$/, sessionsView, "sessions"],
  [/^sessions\/(.+)$/, sessionDetailView, "sessions"],
  [/^workflows$/, workflowsView, "workflows"],
  [/^workflows\/(.+)$/, workflowDetailView, "workflows"],
  [/^stats$/, statsView, "stats"],
];

const view = document.getElementById("view");
let dispose = null;
let generation = 0;

/** Parse "#/runs/abc?span=x" → {path: "runs/abc", params}. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const q = raw.indexOf("?");
  return { path: q < 0 ? raw : raw.slice(0, q), params: new URLSearchParams(q < 0 ? "" : raw.slice(q + 1)) };
}

async function render() {
  const { path, params } = parseHash();
  if (!path) {
    location.replace("#/runs");
    return;
  }
  if (dispose) dispose();
  dispose = null;
  const gen = ++generation;
  // Each view renders into its own element, so a slow view that finishes after the reader moved
  // on never writes over the page they moved to.
  const target = h("div", { class: "view-root" });
  mount(view, target);
  for (const [pattern, fn, tab] of ROUTES) {
    const m = pattern.exec(path);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a[data-tab]")) a.classList.toggle("active", a.dataset.tab === tab);
    try {
      const cleanup = await fn(target, params, ...m.slice(1).map(decodeURIComponent));
      if (typeof cleanup === "function") {
        if (gen === generation) dispose = cleanup; else cleanup();
      }
    } catch (err) {
      if (gen === generation) mount(target, errorBox(`This view failed: ${err.message}`));
      console.error(err);
    }
    return;
  }
  mount(target, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, location.hash), ". ", h("a", { href: "#/runs" }, "Go to runs.")));
}

window.addEventListener("hashchange", render);
render();
