// Renders flowbase's canonical conversation shapes (plugin_sdk/types.py): a Request's messages
// (role + content parts: text, image, tool_call, tool_result, thinking) and a model node's output
// ({text, tool_calls, stop_reason, usage}).

import { h } from "./dom.js";
import { jsonView } from "./json_view.js";

// Message text longer than this (characters) is cut until the reader asks for the rest.
const TEXT_PREVIEW = 1200;

/** The messages of a canonical request (or null when `input` does not look like one). */
export function requestMessages(input) {
  if (input && typeof input === "object" && Array.isArray(input.messages)) return input.messages;
  return null;
}

/**
 * A readable view of a span's input or output when it has a known shape, else null:
 * a canonical request (or a node input {request, inputs?}) → its messages (and inputs);
 * a model node's output {text, tool_calls, …} → the answer; a canonical Response → its content.
 */
export function conversationView(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return null;
  const messages = requestMessages(value) || requestMessages(value.request);
  if (messages) {
    return h("div", {}, value.inputs ? jsonView(value.inputs, { label: "inputs" }) : null, messageList(messages));
  }
  if (typeof value.text === "string" && Array.isArray(value.tool_calls)) return outputView(value);
  if (Array.isArray(value.content) && typeof value.model === "string") {
    return h("div", {}, messageView({ role: "assistant", name: value.model, content: value.content }),
      value.stop_reason ? h("div", { class: "muted small" }, `stop: ${value.stop_reason}`) : null);
  }
  return null;
}

/** A list of chat bubbles, one per message. */
export function messageList(messages) {
  return h("div", { class: "messages" }, messages.map(messageView));
}

export function messageView(msg) {
  const role = msg.role || "?";
  const content = typeof msg.content === "string" ? [{ type: "text", text: msg.content }] : (msg.content || []);
  return h("div", { class: `msg role-${role}` },
    h("div", { class: "msg-role" }, role, msg.name ? ` · ${msg.name}` : ""),
    content.map(partView));
}

function partView(part) {
  switch (part.type) {
    case "text":
      return longText(part.text || "");
    case "thinking":
      return h("div", { class: "part part-thinking" }, h("span", { class: "part-tag" }, "thinking"),
        part.redacted_data ? " (redacted)" : longText(part.text || ""));
    case "tool_call":
      return h("div", { class: "part part-tool" }, h("span", { class: "part-tag" }, `tool call · ${part.name}`),
        h("code", { class: "part-id" }, part.id || ""), argumentsView(part.arguments));
    case "tool_result":
      return h("div", { class: `part part-tool${part.is_error ? " part-error" : ""}` },
        h("span", { class: "part-tag" }, part.is_error ? "tool result (error)" : "tool result"),
        h("code", { class: "part-id" }, part.tool_call_id || ""),
        (part.content || []).map(partView));
    case "image":
      return h("div", { class: "part part-image" }, h("span", { class: "part-tag" }, "image"),
        part.url ? ` ${part.url.slice(0, 120)}` : ` inline ${part.media_type || ""} (${(part.data || "").length.toLocaleString("en-US")} base64 chars)`);
    default:
      return jsonView(part);
  }
}

/** A model node's output: its text, the tool calls it made, why it stopped. */
export function outputView(output) {
  if (!output || typeof output !== "object" || (output.text === undefined && !output.tool_calls)) {
    return jsonView(output === undefined ? null : output);
  }
  const calls = output.tool_calls || [];
  return h("div", { class: "msg role-assistant" },
    h("div", { class: "msg-role" }, "answer", output.stop_reason ? ` · stop: ${output.stop_reason}` : ""),
    output.text ? longText(output.text) : null,
    calls.map((c) => h("div", { class: "part part-tool" }, h("span", { class: "part-tag" }, `tool call · ${c.name}`),
      h("code", { class: "part-id" }, c.id || ""), argumentsView(c.arguments))));
}

function argumentsView(args) {
  if (typeof args === "string") {
    try {
      return jsonView(JSON.parse(args));
    } catch {
      return longText(args);
    }
  }
  return jsonView(args);
}

/** Text with pre-wrapped newlines, cut at TEXT_PREVIEW with a "show more" toggle. */
export function longText(text) {
  const el = h("div", { class: "text" });
  if (text.length <= TEXT_PREVIEW) {
    el.textContent = text;
    return el;
  }
  const body = h("span", {}, text.slice(0, TEXT_PREVIEW) + "…");
  const more = h("button", { class: "link-button", type: "button" }, "show more");
  let open = false;
  more.addEventListener("click", () => {
    open = !open;
    body.textContent = open ? text : text.slice(0, TEXT_PREVIEW) + "…";
    more.textContent = open ? "show less" : "show more";
  });
  el.append(body, " ", more);
  return el;
}
