// A collapsible, read-only JSON viewer: objects and arrays fold (<details>), long strings are cut
// with a "show more" toggle, everything is inserted as text.

import { h } from "./dom.js";

// Strings longer than this (characters) are cut until the reader asks for the rest.
const STRING_PREVIEW = 400;
// Levels deeper than this start folded, so a big request opens readable.
const OPEN_DEPTH = 2;

/** A JSON value as a DOM tree, with a "copy" button for the raw text. */
export function jsonView(value, { label } = {}) {
  const box = h("div", { class: "json" });
  const copy = h("button", { class: "link-button copy", type: "button", title: "copy as JSON" }, "copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(JSON.stringify(value, null, 2));
      copy.textContent = "copied";
    } catch {
      copy.textContent = "copy failed";
    }
    setTimeout(() => { copy.textContent = "copy"; }, 1500);
  });
  box.append(h("div", { class: "json-head" }, label ? h("span", { class: "json-label" }, label) : null, copy));
  box.append(node(value, 0));
  return box;
}

function node(value, depth) {
  if (value === null || value === undefined) return h("span", { class: "j-null" }, "null");
  if (typeof value === "string") return stringNode(value);
  if (typeof value === "number") return h("span", { class: "j-num" }, String(value));
  if (typeof value === "boolean") return h("span", { class: "j-bool" }, String(value));
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return h("span", { class: "j-punct" }, isArray ? "[]" : "{}");
  const summary = isArray ? `[ ${entries.length} item${entries.length === 1 ? "" : "s"} ]`
    : `{ ${entries.slice(0, 4).map(([k]) => k).join(", ")}${entries.length > 4 ? ", …" : ""} }`;
  const details = h("details", { class: "j-fold", open: depth < OPEN_DEPTH },
    h("summary", { class: "j-punct" }, summary));
  const rows = h("div", { class: "j-children" });
  for (const [k, v] of entries) {
    rows.append(h("div", { class: "j-row" },
      h("span", { class: isArray ? "j-index" : "j-key" }, String(k)), h("span", { class: "j-punct" }, ": "),
      node(v, depth + 1)));
  }
  details.append(rows);
  return details;
}

function stringNode(s) {
  if (s.length <= STRING_PREVIEW) return h("span", { class: "j-str" }, quoted(s));
  const text = h("span", { class: "j-str" }, quoted(s.slice(0, STRING_PREVIEW)) + "…");
  const more = h("button", { class: "link-button", type: "button" }, `show more (${s.length.toLocaleString("en-US")} chars)`);
  let open = false;
  more.addEventListener("click", () => {
    open = !open;
    text.textContent = open ? quoted(s) : quoted(s.slice(0, STRING_PREVIEW)) + "…";
    more.textContent = open ? "show less" : `show more (${s.length.toLocaleString("en-US")} chars)`;
  });
  return h("span", {}, text, " ", more);
}

// Newlines stay real line breaks (CSS pre-wrap) so prompts read naturally; quotes mark the bounds.
function quoted(s) {
  return `"${s}"`;
}
