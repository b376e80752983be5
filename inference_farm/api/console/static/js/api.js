// Every call the console makes: the farm's own REST routes, with the signed-in key.
const STORE = "inference-farm.key";

export function savedKey() {
  return sessionStorage.getItem(STORE);
}

export function saveKey(key) {
  sessionStorage.setItem(STORE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(STORE);
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function authHeaders(extra = {}) {
  const key = savedKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const message = (body && (body.message || body.error)) || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, String(message), body);
}

// method path → parsed JSON (or null for an empty body); an ApiError for any non-2xx.
export async function call(method, path, { json, body, headers, signal } = {}) {
  const init = { method, headers: authHeaders(headers), signal, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}

export const get = (path, options) => call("GET", path, options);

// A multipart upload with progress (fetch reports none): resolves to the parsed answer.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const key = savedKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let parsed = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        parsed = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed);
      else {
        const message = (parsed && (parsed.message || parsed.error)) || `${xhr.status} ${xhr.statusText}`;
        reject(new ApiError(xhr.status, String(message), parsed));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload failed: the API did not answer", null)));
    xhr.send(form);
  });
}

// The stream of /v1/events, read with fetch (EventSource cannot send the key).
export async function openEvents(signal) {
  const response = await fetch("/v1/events", { headers: authHeaders(), signal, cache: "no-store" });
  if (!response.ok) throw await errorOf(response);
  return response.body.getReader();
}
