// Workflows (#/workflows, #/workflows/<name>): what this host serves right now (models, their node
// graphs), workflow files that failed to load, every stored workflow, and one workflow's version
// history and source.

import { get, listOf, seg } from "../lib/api.js";
import { h, mount, link, route, fmtTime, fmtAgo, headRow, errorBox, empty } from "../lib/dom.js";

export async function workflowsView(el) {
  const head = h("div", { class: "view-head" }, h("h1", {}, "Workflows"), h("span", { class: "muted" }, "published models served by this host"));
  mount(el, head, empty("loading…"));
  const [published, stored] = await Promise.allSettled([get("/published"), get("/workflows")]);
  if (published.status === "rejected") {
    mount(el, head, errorBox(published.reason.message));
    return null;
  }
  const pub = published.value;
  const errors = pub.errors || [];
  const models = pub.models || [];
  mount(el, head,
    errors.length ? h("section", { class: "load-errors", role: "alert" },
      h("h2", {}, `${errors.length} workflow file${errors.length === 1 ? "" : "s"} failed to load`),
      h("ul", {}, errors.map((e) => h("li", {}, h("code", {}, e.path), h("pre", { class: "error-text" }, e.error))))) : null,
    models.length ? h("div", { class: "cards" }, models.map(modelCard)) : empty("No models are published."),
    h("section", { class: "panel" }, h("h2", {}, "All stored workflows"),
      stored.status === "rejected" ? errorBox(stored.reason.message) : storedTable(listOf(stored.value, "workflows"))));
  return null;
}

/** Every workflow the store has seen, published now or not (a model name moves with its latest claimant). */
function storedTable(workflows) {
  if (!workflows.length) return empty("The store has no workflows yet.");
  return h("table", { class: "grid" },
    headRow(["workflow", "model", ["current version", "num"], "first saved", "last changed"]),
    h("tbody", {}, workflows.map((w) => h("tr", {},
      h("td", {}, link(`#/workflows/${encodeURIComponent(w.name)}`, w.name)),
      h("td", { class: "mono" }, w.model ?? h("span", { class: "muted" }, "not published")),
      h("td", { class: "num" }, w.current_version !== undefined ? `v${w.current_version}` : "—"),
      h("td", { title: w.created_at || "" }, fmtTime(w.created_at)),
      h("td", { title: w.updated_at || "" }, fmtTime(w.updated_at), h("div", { class: "muted small" }, fmtAgo(w.updated_at)))))));
}

function modelCard(m) {
  return h("section", { class: "panel card" },
    h("div", { class: "card-head" },
      h("h2", { class: "mono" }, m.model),
      h("span", { class: "muted" }, "workflow ", link(`#/workflows/${encodeURIComponent(m.workflow)}`, m.workflow), ` v${m.version}`)),
    m.description ? h("p", { class: "description" }, m.description) : null,
    m.path ? h("div", { class: "muted small mono" }, m.path) : null,
    nodesTable(m.nodes || [], m.output),
    h("div", { class: "card-links" }, link(route("#/runs", { model: m.model }), "runs"), " · ", link(route("#/stats", {}), "stats")));
}

function nodesTable(nodes, output) {
  const outputs = new Set(Array.isArray(output) ? output : output ? [output] : []);
  return h("table", { class: "grid nodes" },
    headRow(["node", "type", "after", "provider / model"]),
    h("tbody", {}, nodes.map((n) => h("tr", {},
      h("td", { class: "mono nowrap" }, n.id, outputs.has(n.id) ? h("span", { class: "badge subtle", title: "its output is the answer" }, "answer") : null),
      h("td", {}, n.type),
      h("td", { class: "mono" }, (n.deps || []).join(", ")),
      h("td", {}, [n.provider, n.model].filter(Boolean).join(" / "))))));
}

export async function workflowDetailView(el, params, name) {
  const head = h("div", { class: "view-head" }, h("h1", {}, "Workflow ", h("span", { class: "mono" }, name)), link("#/workflows", "« all workflows"));
  mount(el, head, empty("loading…"));
  const wanted = params.get("version");
  // The current workflow (with its source), its version list, and — when one is picked — that version's source.
  const [current, versions, picked] = await Promise.allSettled([
    get(`/workflows/${seg(name)}`), get(`/workflows/${seg(name)}/versions`),
    wanted ? get(`/workflows/${seg(name)}/versions/${seg(wanted)}`) : Promise.resolve(null)]);
  const versionList = versions.status === "fulfilled" ? listOf(versions.value, "versions") : [];
  const cur = current.status === "fulfilled" ? current.value : null;
  const curVersion = cur ? (cur.current_version ?? cur.version) : undefined;
  const shown = wanted ? (picked.status === "fulfilled" ? picked.value : null) : cur;
  const failure = wanted ? (picked.status === "rejected" ? picked.reason : null) : (current.status === "rejected" ? current.reason : null);
  const source = shown && sourceOf(shown);
  mount(el, head,
    cur && cur.model ? h("div", { class: "muted view-note" }, "published as ", link(route("#/runs", { model: cur.model }), cur.model)) : null,
    h("div", { class: "run-layout" },
      h("section", { class: "panel run-main" },
        h("h2", {}, wanted ? `Source of version ${wanted}` : "Current source",
          !wanted && curVersion !== undefined ? h("span", { class: "muted" }, ` (v${curVersion})`) : null),
        failure ? errorBox(failure.message) : null,
        source ? h("pre", { class: "source" }, source) : (failure ? null : empty("No source recorded."))),
      h("section", { class: "panel" }, h("h2", {}, "Versions"),
        versions.status === "rejected" ? errorBox(versions.reason.message)
          : versionList.length ? versionsTable(name, versionList, wanted ?? (curVersion === undefined ? null : String(curVersion)), curVersion)
            : empty("No versions recorded."))));
  return null;
}

// The source text may be served as `source`, `source_text`, `text` or `yaml`; a bare string is the source itself.
function sourceOf(v) {
  if (typeof v === "string") return v;
  return v && (v.source ?? v.source_text ?? v.text ?? v.yaml ?? null);
}

function versionsTable(name, versions, shownVersion, currentVersion) {
  const sorted = [...versions].sort((a, b) => (b.version ?? 0) - (a.version ?? 0));
  return h("table", { class: "grid" },
    headRow(["version", "saved", "digest"]),
    h("tbody", {}, sorted.map((v) => {
      const at = v.created_at ?? v.saved_at;
      return h("tr", { class: String(v.version) === shownVersion ? "selected" : "" },
        h("td", {}, link(route(`#/workflows/${encodeURIComponent(name)}`, { version: v.version }), `v${v.version}`),
          v.version === currentVersion ? h("span", { class: "badge subtle" }, "current") : null),
        h("td", { title: at || "" }, fmtTime(at), h("div", { class: "muted small" }, fmtAgo(at))),
        h("td", { class: "mono small", title: v.digest || "" }, (v.digest ?? "").slice(0, 12)));
    })));
}
