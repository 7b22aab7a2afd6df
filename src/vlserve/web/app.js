// The playground page: wires the form to the API (chat streaming, document jobs) and shows each answer
// with its trace id, usage and timings.
import { ApiError, apiKey, callJson, setApiKey, streamChat } from "./api.js";
import { runDocument } from "./documents.js";
import { Attachments } from "./files.js";
import { applyLanguage, initialLanguage, language, t } from "./i18n.js";
import { EXAMPLES, formatJson, parseJson, validate } from "./schema.js";

const $ = (id) => document.getElementById(id);
const attachments = new Attachments($("file-list"));
let model = null;
let running = null; // the AbortController of the request in flight

// --- API key -------------------------------------------------------------------------------------

function askForKey(reason) {
  $("key-panel").hidden = false;
  $("key-reason").textContent = reason ? t("key.rejected", { message: reason }) : t("key.needed");
  $("key-open").hidden = false;
  $("api-key").focus();
}

async function loadModel() {
  try {
    const { body } = await callJson("/v1/models");
    model = body.data?.[0]?.id ?? null;
    $("model-name").textContent = model ?? "—";
    $("key-panel").hidden = true;
    if (apiKey()) $("key-open").hidden = false;
  } catch (error) {
    if (error instanceof ApiError && error.needsKey) askForKey(apiKey() ? error.message : null);
    else showError(error);
  }
}

// --- the answer area -----------------------------------------------------------------------------

function setStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  if (error instanceof ApiError) {
    const where = error.param ? ` (${error.param})` : "";
    box.textContent = `${t("error.http", { status: error.status })}: ${error.message}${where}`;
    if (error.traceId) showMeta({ traceId: error.traceId });
    if (error.needsKey) askForKey(apiKey() ? error.message : null);
  } else if (error instanceof TypeError) {
    box.textContent = t("error.network", { message: error.message });
  } else {
    box.textContent = String(error.message || error);
  }
  box.hidden = false;
}

function clearAnswer() {
  $("error").hidden = true;
  $("error").textContent = "";
  $("answer").textContent = "";
  $("json-result").hidden = true;
  $("doc-result").hidden = true;
  $("doc-pages").replaceChildren();
  $("meta").hidden = true;
  for (const id of ["meta-trace", "meta-usage", "meta-ttft", "meta-total"]) setMeta(id, "");
}

/** One line of the answer's details; a line without a value is hidden. */
function setMeta(id, text) {
  $(id).textContent = text;
  $(id).parentElement.hidden = !text;
}

const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

function showMeta({ traceId, usage, ttft, total }) {
  $("meta").hidden = false;
  if (traceId) setMeta("meta-trace", traceId);
  if (usage) {
    setMeta("meta-usage", usage.prompt_tokens === undefined
      ? t("meta.tokens", { completion: usage.completion_tokens })
      : t("meta.usageValue", {
        prompt: usage.prompt_tokens, completion: usage.completion_tokens, total: usage.total_tokens,
      }));
  }
  if (ttft !== undefined) setMeta("meta-ttft", seconds(ttft));
  if (total !== undefined) setMeta("meta-total", seconds(total));
}

/** Pretty JSON and whether it validates against `schema`, shown in `parsedEl` / `verdictEl`. */
function showJson(value, schema, parsedEl, verdictEl) {
  parsedEl.textContent = formatJson(value);
  const problems = validate(value, schema);
  verdictEl.textContent = problems.length ? t("json.invalid", { problems: problems.join("; ") }) : t("json.valid");
  verdictEl.dataset.valid = String(problems.length === 0);
}

// --- running requests ----------------------------------------------------------------------------

function begin() {
  clearAnswer();
  running = new AbortController();
  $("ask").disabled = true;
  $("read-doc").disabled = true;
  $("stop").disabled = false;
  return running.signal;
}

function end() {
  running = null;
  $("ask").disabled = false;
  $("read-doc").disabled = false;
  $("stop").disabled = true;
}

/** The schema typed in (parsed), null when JSON mode is off; throws with a readable message when bad. */
function schemaOrNull() {
  $("schema-error").hidden = true;
  if (!$("json-mode").checked) return null;
  try {
    const schema = JSON.parse($("schema").value);
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw new Error("not an object");
    return schema;
  } catch (error) {
    $("schema-error").textContent = t("json.badSchema", { message: error.message });
    $("schema-error").hidden = false;
    $("schema").focus();
    return undefined;
  }
}

function numberField(id) {
  const value = $(id).valueAsNumber;
  return Number.isFinite(value) ? value : undefined;
}

async function ask() {
  const question = $("question").value.trim();
  if (attachments.has("pdf")) {
    clearAnswer();
    showError(new Error(t("error.pdfInChat")));
    return;
  }
  if (!question && !attachments.items.length) {
    clearAnswer();
    showError(new Error(t("error.empty")));
    $("question").focus();
    return;
  }
  const schema = schemaOrNull();
  if (schema === undefined) return;
  const signal = begin();
  setStatus(t("status.sending"));
  const started = performance.now();
  let ttft;
  let text = "";
  try {
    const content = [...(await attachments.contentParts())];
    if (question) content.push({ type: "text", text: question });
    const body = {
      model: model ?? undefined,
      messages: [{ role: "user", content }],
      max_tokens: numberField("max-tokens"),
      temperature: numberField("temperature"),
    };
    if (schema) body.response_format = { type: "json_schema", json_schema: { name: "answer", schema, strict: true } };
    const { finish, usage, traceId } = await streamChat(body, {
      signal,
      onResponse: (traceId) => {
        showMeta({ traceId });
        setStatus(t("status.streaming"));
      },
      onDelta: (piece) => {
        if (ttft === undefined) {
          ttft = performance.now() - started;
          showMeta({ ttft });
        }
        text += piece;
        $("answer").textContent = text;
      },
    });
    showMeta({ traceId, usage, ttft, total: performance.now() - started });
    setStatus(t("status.done", { reason: finish ?? "?" }));
    if (schema) showParsedAnswer(text, schema);
  } catch (error) {
    showMeta({ ttft, total: performance.now() - started });
    if (signal.aborted) setStatus(t("status.stopped"));
    else {
      setStatus("");
      showError(error);
    }
  } finally {
    end();
  }
}

function showParsedAnswer(text, schema) {
  $("json-result").hidden = false;
  try {
    showJson(parseJson(text), schema, $("json-parsed"), $("json-valid"));
  } catch (error) {
    $("json-parsed").textContent = "";
    $("json-valid").textContent = t("json.notJson", { message: error.message });
    $("json-valid").dataset.valid = "false";
  }
}

function renderPages(result, schema) {
  $("doc-pages").replaceChildren(
    ...result.pages.map((page) => {
      const item = document.createElement("li");
      item.dataset.status = page.status;
      const heading = document.createElement("h3");
      heading.textContent = `${t("doc.page", { page: page.page })} · ${page.status}`;
      item.append(heading);
      if (page.error) {
        const error = document.createElement("p");
        error.className = "error";
        error.textContent = page.error;
        item.append(error);
      }
      if (page.status === "succeeded") {
        const pre = document.createElement("pre");
        pre.className = page.data === undefined ? "answer" : "code";
        if (page.data === undefined) pre.textContent = page.text ?? "";
        item.append(pre);
        if (page.data !== undefined) {
          const verdict = document.createElement("p");
          verdict.className = "verdict";
          showJson(page.data, schema, pre, verdict);
          item.append(verdict);
        }
        const tokens = (page.tries || []).reduce((sum, attempt) => sum + (attempt.tokens || 0), 0);
        const timing = document.createElement("p");
        timing.className = "hint";
        timing.textContent = [
          page.timings?.total_ms !== undefined ? seconds(page.timings.total_ms) : null,
          tokens ? t("meta.tokens", { completion: tokens }) : null,
        ].filter(Boolean).join(" · ");
        item.append(timing);
      }
      return item;
    }),
  );
}

async function readDocument() {
  if (!attachments.items.length || attachments.has("video")) {
    clearAnswer();
    showError(new Error(t("doc.needsFiles")));
    $("files").focus();
    return;
  }
  const schema = schemaOrNull();
  if (schema === undefined) return;
  const signal = begin();
  setStatus(t("status.sending"));
  $("doc-result").hidden = false;
  const started = performance.now();
  let completion = 0;
  try {
    const { status, traceId } = await runDocument({
      files: attachments.files,
      prompt: $("question").value.trim(),
      schema: schema ? $("schema").value : null, // as typed: the server parses it
      signal,
      onStatus: (job) => {
        const { total, done } = job.pages;
        $("doc-progress").max = Math.max(total, 1);
        $("doc-progress").value = done;
        $("doc-count").textContent = t("doc.count", { done, total, status: job.status });
        setStatus(t("status.queued", { id: job.id }));
      },
      onResult: (result) => {
        renderPages(result, schema);
        completion = result.pages.flatMap((page) => page.tries || []).reduce((sum, a) => sum + (a.tokens || 0), 0);
      },
    });
    showMeta({ traceId, usage: { completion_tokens: completion }, total: performance.now() - started });
    setStatus(t("status.jobDone", { id: status.id, status: status.status }));
  } catch (error) {
    if (signal.aborted) setStatus(t("status.cancelled"));
    else {
      setStatus("");
      showError(error);
    }
  } finally {
    end();
  }
}

// --- wiring --------------------------------------------------------------------------------------

function fillExamples() {
  const select = $("schema-example");
  const chosen = select.value || Object.keys(EXAMPLES)[0];
  select.replaceChildren(
    ...Object.entries(EXAMPLES).map(([name, example]) => new Option(example.label[language()] ?? example.label.en, name)),
  );
  select.value = chosen;
}

function useExample() {
  $("schema").value = JSON.stringify(EXAMPLES[$("schema-example").value].schema, null, 2);
}

function wire() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    $("api-key").value = "";
    loadModel();
  });
  $("key-forget").addEventListener("click", () => {
    setApiKey("");
    askForKey(null);
  });
  $("key-open").addEventListener("click", () => askForKey(null));
  $("lang-switch").addEventListener("click", (event) => {
    applyLanguage(event.currentTarget.dataset.target, true);
    fillExamples();
    attachments.render();
  });

  $("files").addEventListener("change", (event) => {
    attachments.add(event.target.files);
    event.target.value = ""; // the same file may be picked again after it is removed
  });
  // Files dropped anywhere on the page are attached (the browser would otherwise open them instead).
  const drop = $("drop");
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer?.files.length) attachments.add(event.dataTransfer.files);
  });

  $("json-mode").addEventListener("change", (event) => {
    $("schema-box").hidden = !event.target.checked;
    if (event.target.checked && !$("schema").value.trim()) useExample();
  });
  $("schema-example").addEventListener("change", useExample);

  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!running) ask();
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("read-doc").addEventListener("click", () => {
    if (!running) readDocument();
  });
  $("stop").addEventListener("click", () => running?.abort());
}

applyLanguage(initialLanguage());
fillExamples();
wire();
loadModel();
