// The HTTP API with the signed-in user's token in the Authorization header (never in a URL).
// Errors come back as ApiError carrying the problem+json status and detail.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export class Api {
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body, { signal } = {}) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "the server cannot be reached");
    }
    if (response.status === 401) this.onUnauthorized?.();
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        const problem = await response.json();
        detail = problem.detail || problem.title || detail;
      } catch {
        // Not a problem+json body: the status line says enough.
      }
      throw new ApiError(response.status, detail);
    }
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : response.text();
  }

  get(path, options) { return this.request("GET", path, undefined, options); }
  post(path, body) { return this.request("POST", path, body ?? {}); }
  patch(path, body) { return this.request("PATCH", path, body); }
  delete(path) { return this.request("DELETE", path); }
}

/** `/api/conversations/{id}…` with the id escaped. */
export const conversationPath = (id, rest = "") =>
  `/api/conversations/${encodeURIComponent(id)}${rest}`;
