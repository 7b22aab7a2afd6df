// Calls to this server's API: the API key from session storage as a Bearer token, errors from the
// OpenAI error envelope, and the server-sent events of a streamed chat completion.

import { parseJson } from "./schema.js";

const KEY_STORE = "vlserve.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

/** An answer the server refused: its HTTP status and the envelope's message, param and code. */
export class ApiError extends Error {
  constructor(status, message, { param = null, code = null, traceId = null } = {}) {
    super(message);
    this.status = status;
    this.param = param;
    this.code = code;
    this.traceId = traceId;
  }

  get needsKey() {
    return this.status === 401;
  }
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/** An ApiError from a non-2xx response, read from the OpenAI error envelope when there is one. */
async function refusal(response) {
  const traceId = response.headers.get("X-Request-Id");
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page; the status alone says what happened
  }
  const error = body && typeof body.error === "object" && body.error ? body.error : {};
  const message = error.message || (typeof body?.detail === "string" ? body.detail : `HTTP ${response.status}`);
  return new ApiError(response.status, message, { param: error.param, code: error.code, traceId });
}

/** fetch() with the key; resolves to the response when it is 2xx, else rejects with an ApiError. */
export async function call(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, signal, headers: headers(), credentials: "omit", cache: "no-store" };
  if (json !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await refusal(response);
  return response;
}

export async function callJson(path, options) {
  const response = await call(path, options);
  return { body: parseJson(await response.text()), traceId: response.headers.get("X-Request-Id") };
}

/**
 * Stream a chat completion: `onDelta(text)` for each piece of the answer; resolves to the finish
 * reason, the usage and the trace id. Aborting `signal` ends the stream (and the server's generation).
 */
export async function streamChat(body, { signal, onDelta, onResponse }) {
  const response = await call("/v1/chat/completions", {
    method: "POST",
    json: { ...body, stream: true, stream_options: { include_usage: true } },
    signal,
  });
  const traceId = response.headers.get("X-Request-Id");
  onResponse?.(traceId);
  let finish = null;
  let usage = null;
  for await (const event of serverEvents(response.body)) {
    if (event === "[DONE]") break;
    const chunk = JSON.parse(event);
    if (chunk.error) {
      const { message, param, code } = chunk.error;
      throw new ApiError(response.status, message, { param, code, traceId });
    }
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices || []) {
      const text = choice.delta?.content;
      if (text) onDelta(text);
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { finish, usage, traceId };
}

/** The `data:` payloads of a text/event-stream body, one string per event. */
async function* serverEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) yield data;
      }
    }
  } finally {
    reader.cancel().catch(() => {});  // left early (an error event, [DONE]): the body is not read further
  }
}
