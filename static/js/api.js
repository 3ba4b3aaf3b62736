// The API client: JSON calls, jobs, and the admin token (this tab's sessionStorage only, never a
// cookie or localStorage), sent as "Authorization: Bearer" to the admin routes.

export class ApiError extends Error {
  constructor(reason, httpStatus = 0) {
    super(reason);
    this.reason = reason;
    this.httpStatus = httpStatus;
  }
}

// A run the page no longer wants (a newer one started): its late replies are dropped.
export class Superseded extends Error {}

const TOKEN_KEY = "lestats-admin-token";
const WAIT_S = 5;

export function adminToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setAdminToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode): the token lasts only as long as the field holds it.
  }
}

export async function api(method, path, body, { admin = false } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (admin && adminToken()) init.headers.Authorization = `Bearer ${adminToken()}`;
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`cannot reach the server (${error.message})`);
  }
  let reply = null;
  try {
    reply = await response.json();
  } catch {
    throw new ApiError(`the server answered ${response.status} ${response.statusText} without JSON`, response.status);
  }
  if (!response.ok || (reply && reply.status === "error")) {
    const reason = reply && typeof reply.reason === "string" ? reply.reason : `HTTP ${response.status}`;
    throw new ApiError(reason, response.status);
  }
  return reply;
}

export function jobUrl(jobId) {
  return `/api/get_results/${encodeURIComponent(jobId)}`;
}

export async function submitJob(kind, body) {
  const reply = await api("POST", `/api/${kind}`, body);
  return reply.job_id;
}

// The job's data once done; `current()` says whether the caller still wants it.
export async function waitJob(jobId, current) {
  for (;;) {
    if (!current()) throw new Superseded();
    const reply = await api("GET", `${jobUrl(jobId)}?wait=${WAIT_S}`);
    if (!current()) throw new Superseded();
    if (reply.status === "done") return reply.data;
    if (reply.status !== "running") throw new ApiError(`unexpected job status ${JSON.stringify(reply.status)}`);
  }
}
