// api.js - the app's only way to the server: the public JSON API with the session cookie.
// Writes carry the page's CSRF token (API.md §2). A failed call throws an ApiError whose
// message is the server's own sentence, so every view can show it as it is.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

export class ApiError extends Error {
  constructor(message, status, code, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

async function parse(res) {
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  if (!type.includes("json")) {
    if (res.ok) return res;
    throw new ApiError(`The server answered ${res.status} ${res.statusText}.`, res.status);
  }
  const body = await res.json();
  if (!res.ok) {
    let msg = body.error || `The server answered ${res.status}.`;
    if (body.details) {
      const parts = Object.entries(body.details).map(([k, v]) => `${k} ${[].concat(v).join(", ")}`);
      if (parts.length) msg += ` (${parts.join("; ")})`;
    }
    throw new ApiError(msg, res.status, body.code, body.details);
  }
  return body;
}

export async function api(method, path, body, { raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = csrf;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError("The server cannot be reached; check your connection and try again.", 0);
  }
  if (raw && res.ok) return res;
  return parse(res);
}

export const get = (path) => api("GET", path);

// For a view that reloads as the user changes its query (filters, sort, search, pages):
// `const begin = newest()` once; each load calls `const stale = begin()` and, after every
// await, returns if stale(): an older request answering after a newer one began is never
// drawn over it (nor is its error).
export function newest() {
  let n = 0;
  return () => {
    const mine = ++n;
    return () => mine !== n;
  };
}
export const post = (path, body) => api("POST", path, body);
export const del = (path) => api("DELETE", path);
export const patch = (path, body) => api("PATCH", path, body);

// Uploads one file with progress (fetch has no upload progress; XMLHttpRequest does).
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError("The upload was interrupted; try again.", 0));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON: reported below */
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
      else if (xhr.status === 413)
        reject(new ApiError(body?.error || "The file is too large for this server.", 413, "payload_too_large"));
      else reject(new ApiError(body?.error || `The server answered ${xhr.status}.`, xhr.status, body?.code));
    };
    xhr.send(form);
  });
}
