// The one way the dashboard talks to the Opus REST API: base URL from config.js, the API key from
// sessionStorage (never from the page's source), and one error type whose message a person can act on.

const KEY_ITEM = "opus.apiKey";
const WHO_ITEM = "opus.credential";

export class ApiError extends Error {
  constructor(status, code, message, details = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

export function apiOrigin() {
  const configured = (window.OPUS_CONFIG && window.OPUS_CONFIG.apiBase) || "";
  return configured.replace(/\/+$/, "");
}

export const API_ROOT = "/api/v2";

export const session = {
  key() {
    return sessionStorage.getItem(KEY_ITEM);
  },
  credential() {
    const text = sessionStorage.getItem(WHO_ITEM);
    return text ? JSON.parse(text) : null;
  },
  start(key, credential) {
    sessionStorage.setItem(KEY_ITEM, key);
    sessionStorage.setItem(WHO_ITEM, JSON.stringify(credential));
  },
  end() {
    sessionStorage.removeItem(KEY_ITEM);
    sessionStorage.removeItem(WHO_ITEM);
  },
};

const listeners = { unauthorized: [] };

/** Call `fn(error)` whenever the API refuses the stored key (401): the session is over. */
export function onUnauthorized(fn) {
  listeners.unauthorized.push(fn);
}

export function queryString(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    search.append(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

function describe(status, message, retryAfter) {
  if (status === 401) return message || "The API key was refused.";
  if (status === 403) return message || "This key's scope does not allow that.";
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
    return `Too many requests for this key.${wait}`;
  }
  if (status >= 500) return `The API had a problem (${status}): ${message || "server error"}. Try again later.`;
  return message || `The request failed (${status}).`;
}

/**
 * `api("/diamonds", {query: {...}})` resolves to the decoded JSON body or rejects with an ApiError.
 * `key` overrides the stored key (signing in tests a key before storing it).
 */
export async function api(path, { method = "GET", query = null, body = undefined, headers = {}, key = null } = {}) {
  const url = `${apiOrigin()}${API_ROOT}${path}${queryString(query)}`;
  const sent = { Accept: "application/json", ...headers };
  const credential = key || session.key();
  if (credential) sent["X-API-Key"] = credential;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "unreachable", "The API cannot be reached. Check the connection, then try again.");
  }
  const data = await response.json().catch(() => null);
  if (response.ok) return data;
  const error = (data && data.error) || {};
  const retryAfter = response.headers.get("Retry-After");
  const failure = new ApiError(
    response.status, error.code || `http_${response.status}`,
    describe(response.status, error.message, retryAfter), error.details ?? null, retryAfter,
  );
  if (response.status === 401 && !key) listeners.unauthorized.forEach((fn) => fn(failure));
  throw failure;
}

const RANK = { read: 1, trade: 2, admin: 3 };

/** Whether the signed-in credential's scope includes `needed` (read < trade < admin). */
export function allows(needed) {
  const who = session.credential();
  return Boolean(who) && (RANK[who.scope] || 0) >= RANK[needed];
}
