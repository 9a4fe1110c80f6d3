// REST calls (/api/v1) and the signed-in token (kept in localStorage).

const TOKEN_KEY = "tradepulse.token";
const listeners = new Set();

/** The stored token, or null. */
export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

/** The claims of a JWT (not verified here: the server verifies every use). */
export function claims(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** Who is signed in: {user, admin, exp} or null (no token, or one that expired). */
export function principal() {
  const jwt = token();
  const c = jwt && claims(jwt);
  if (!c || typeof c.sub !== "string") return null;
  if (typeof c.exp === "number" && c.exp * 1000 < Date.now()) return null;
  return { user: c.sub, admin: Boolean(c.admin), exp: c.exp };
}

export function signIn(jwt) {
  localStorage.setItem(TOKEN_KEY, jwt.trim());
  listeners.forEach((fn) => fn(principal()));
}

export function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  listeners.forEach((fn) => fn(null));
}

export function onAuthChange(fn) {
  listeners.add(fn);
}

/** An API error: the problem+json body, when there is one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** fetch /api/v1<path> with the bearer token; JSON in and out; ApiError on failure. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const jwt = token();
  if (jwt) headers.Authorization = `Bearer ${jwt}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
