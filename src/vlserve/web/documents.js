// A document job: POST /v1/documents (multipart), then its status polled until it ends; each time a
// page finishes, the per-page results are fetched again. Aborting `signal` cancels the job on the server.
import { call, callJson } from "./api.js";

const ENDED = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 400;

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/**
 * Run a job over `files` with an optional prompt and JSON Schema (text). `onStatus(status)` gets each
 * status read (pages.total, pages.done, ...); `onResult(result)` the per-page results as they change.
 * Resolves to { status, result, traceId }.
 */
export async function runDocument({ files, prompt, schema, signal, onStatus, onResult }) {
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  if (prompt) form.append("prompt", prompt);
  if (schema) form.append("json_schema", schema);
  const { body: created, traceId } = await callJson("/v1/documents", { method: "POST", form, signal });
  const path = `/v1/documents/${encodeURIComponent(created.id)}`;
  let status = created;
  let shown = -1;
  let result = null;
  onStatus(status);
  try {
    for (;;) {
      if (status.pages.done !== shown) {
        shown = status.pages.done;
        result = (await callJson(`${path}/result`, { signal })).body;
        onResult(result);
      }
      if (ENDED.has(status.status)) break;
      await sleep(POLL_MS, signal);
      status = (await callJson(path, { signal })).body;
      onStatus(status);
    }
  } catch (error) {
    if (signal.aborted) await call(path, { method: "DELETE" }).catch(() => {});  // stop reading its pages
    throw error;
  }
  if (ENDED.has(status.status) && result?.status !== status.status) {
    result = (await callJson(`${path}/result`)).body;  // the final word on every page
    onResult(result);
  }
  return { status, result, traceId };
}
