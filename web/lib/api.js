// The management API client: GET JSON from /api, with errors turned into readable messages.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET /api<path>?params → parsed JSON. Empty params are left out of the query string. */
export async function get(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const url = `/api${path}${q.toString() ? "?" + q : ""}`;
  let res;
  try {
    res = await fetch(url, { headers: { accept: "application/json" } });
  } catch (err) {
    throw new ApiError(0, `cannot reach the flowbase host (${err.message})`);
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) throw new ApiError(res.status, `${res.status} ${res.statusText}: ${errorText(body) || text.slice(0, 300)}`);
  return body;
}

// FastAPI puts errors in {"detail": …}; flowbase's own in {"error": {"message": …}}.
function errorText(body) {
  if (!body || typeof body !== "object") return "";
  if (typeof body.detail === "string") return body.detail;
  if (body.detail) return JSON.stringify(body.detail);
  if (body.error && typeof body.error === "object") return body.error.message || JSON.stringify(body.error);
  if (typeof body.error === "string") return body.error;
  if (typeof body.message === "string") return body.message;
  return "";
}

/** A list the API returns either bare or wrapped as {<key>: [...]} (or {items: [...]}). */
export function listOf(body, key) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body[key])) return body[key];
  if (body && Array.isArray(body.items)) return body.items;
  return [];
}

/** Encode one path segment (run ids, session ids, workflow names). */
export const seg = (s) => encodeURIComponent(String(s));
