// The HTTP/JSON API (docs/HTTP.md): every RPC is POST /v1/{Method} with the request message as proto3 JSON.
// int64/uint64 travel as strings, bytes as base64, enums by name; fields at their default are left out of
// replies, so readers treat a missing field as 0 / "" / [].

export const DEADLINE_MS = 30000;

export class ApiError extends Error {
  constructor(status, code, message, kind = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.kind = kind;
  }
}

// --- signing in ---------------------------------------------------------------------------------------
// A 401 asks the page for a token (the form in index.html, wired by app.js); every call that met the 401
// waits for the same sign-in and is then sent again.

let loginHandler = null;
let pendingLogin = null;

export function setLoginHandler(fn) {
  loginHandler = fn;
}

function waitForLogin(message) {
  if (!pendingLogin) {
    pendingLogin = Promise.resolve(loginHandler(message)).finally(() => {
      pendingLogin = null;
    });
  }
  return pendingLogin;
}

/** POST /api/session {token}: true when the server took the token (and set its cookie). */
export async function startSession(token) {
  const resp = await fetch('/api/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Deadline-Ms': String(DEADLINE_MS) },
    body: JSON.stringify({ token }),
    credentials: 'same-origin',
  });
  if (resp.ok) return true;
  if (resp.status === 401 || resp.status === 403) return false;
  throw await errorFrom(resp);
}

// --- calls --------------------------------------------------------------------------------------------

async function errorFrom(resp) {
  let body = null;
  try {
    const text = await resp.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const code = (body && body.code) || `HTTP_${resp.status}`;
  let message = body && body.message;
  if (!message) {
    message = resp.status === 413
      ? 'The file is larger than this server accepts.'
      : `The server answered ${resp.status}${resp.statusText ? ` ${resp.statusText}` : ''}.`;
  }
  return new ApiError(resp.status, code, message, (body && body.kind) || '');
}

async function send(url, init, deadlineMs = DEADLINE_MS) {
  for (;;) {
    const headers = new Headers(init.headers || {});
    headers.set('X-Deadline-Ms', String(deadlineMs));
    headers.set('Accept', 'application/json');
    let resp;
    try {
      resp = await fetch(url, { ...init, headers, credentials: 'same-origin' });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'UNAVAILABLE', 'The server cannot be reached. Is `latentdex serve` running?');
    }
    if (resp.status === 401 && loginHandler) {
      const err = await errorFrom(resp);
      if (init.signal && init.signal.aborted) throw new DOMException('aborted', 'AbortError');
      await waitForLogin(err.message);
      if (init.signal && init.signal.aborted) throw new DOMException('aborted', 'AbortError');
      continue;
    }
    if (!resp.ok) throw await errorFrom(resp);
    const text = await resp.text();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(resp.status, 'INTERNAL', 'The server sent a reply that is not JSON.');
    }
  }
}

/**
 * One RPC: POST /v1/{method} with `body` as JSON; the reply message as an object. `deadlineMs`: how long
 * the server may take (30 s unless a call needs longer, as finding every duplicate of a big library).
 */
export function call(method, body = {}, { signal, deadlineMs = DEADLINE_MS } = {}) {
  return send(`/v1/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  }, deadlineMs);
}

/** QueryByImage with the raw file as the body and the options as dotted query parameters. */
export function queryByImage(file, options, { signal } = {}) {
  const params = new URLSearchParams();
  addParams(params, 'options', options);
  const qs = params.toString();
  return send(`/v1/QueryByImage${qs ? `?${qs}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': file.type || 'application/octet-stream' },
    body: file,
    signal,
  });
}

/** Flattens a message into dotted field paths; a repeated field repeats its name. */
export function addParams(params, prefix, value) {
  if (value === undefined || value === null || value === '') return;
  if (Array.isArray(value)) {
    for (const item of value) params.append(prefix, String(item));
  } else if (typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) addParams(params, `${prefix}.${key}`, inner);
  } else {
    params.append(prefix, String(value));
  }
}

// --- image URLs ---------------------------------------------------------------------------------------

export function thumbUrl(id, size = 256) {
  return `/v1/images/${encodeURIComponent(id)}/thumbnail?size=${size}`;
}

export function previewUrl(id, size = 128) {
  return `/v1/images/${encodeURIComponent(id)}/preview?size=${size}`;
}

const MIME = { PNG: 'image/png', JPEG: 'image/jpeg', WEBP: 'image/webp', 1: 'image/png', 2: 'image/jpeg', 3: 'image/webp' };

/** A data: URL for an EncodedImage ({data: base64, format, width, height}); '' when it has no data. */
export function encodedImageSrc(image) {
  if (!image || !image.data) return '';
  const format = String(image.format || 'PNG').replace(/^IMAGE_FORMAT_/, '').toUpperCase();
  return `data:${MIME[format] || 'image/png'};base64,${image.data}`;
}

export function isAbort(err) {
  return Boolean(err) && err.name === 'AbortError';
}
