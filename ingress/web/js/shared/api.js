// The HTTP API from the browser: JSON in and out, the session's Bearer token, and every failure
// turned into an ApiError {status, code, message} whose message can be shown as it is.

export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorFrom(status, body, statusText) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error === "object") {
    return new ApiError(status, String(error.code || "error"), String(error.message || statusText), body);
  }
  if (body && typeof body === "object" && typeof body.message === "string") {
    return new ApiError(status, String(body.code || "error"), body.message, body);
  }
  const text = typeof body === "string" && body.trim() ? body.trim().slice(0, 300) : statusText;
  return new ApiError(status, `http_${status}`, `${status} ${text || "request failed"}`, body);
}

/**
 * createApi(getToken) -> {request, get, post, patch, del}.
 * getToken() is asked on every call, so signing in or out needs no new client.
 * Extra headers (e.g. {"x-admin-token": ...}) can be passed per call; {auth: false} sends no token.
 */
export function createApi(getToken = () => null) {
  async function request(method, path, { body, headers = {}, signal, auth = true } = {}) {
    const finalHeaders = { Accept: "application/json", ...headers };
    const token = auth ? getToken() : null;
    if (token && !("Authorization" in finalHeaders)) finalHeaders.Authorization = `Bearer ${token}`;
    const init = { method, headers: finalHeaders, signal, credentials: "same-origin" };
    if (body !== undefined) {
      finalHeaders["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "network_error", `cannot reach the server (${err && err.message ? err.message : err})`);
    }
    const parsed = await readBody(response);
    if (!response.ok) throw errorFrom(response.status, parsed, response.statusText);
    return parsed;
  }
  return {
    request,
    get: (path, opts) => request("GET", path, opts),
    post: (path, body, opts) => request("POST", path, { ...opts, body }),
    patch: (path, body, opts) => request("PATCH", path, { ...opts, body }),
    del: (path, opts) => request("DELETE", path, opts),
  };
}
