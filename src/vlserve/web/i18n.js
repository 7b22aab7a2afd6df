// English and Chinese strings; the language comes from the browser unless the user switched it.
const STRINGS = {
  en: {
    skip: "Skip to the question",
    title: "vlserve playground",
    model: "Model",
    "lang.hint": "Switch the page's language",
    "key.change": "API key",
    "key.heading": "API key",
    "key.needed":
      "This server needs an API key. It is kept in this tab only (session storage) and sent as a Bearer token, never in a URL.",
    "key.rejected": "The server refused this key: {message}",
    "key.label": "Key",
    "key.use": "Use key",
    "key.forget": "Forget key",
    "ask.heading": "Ask",
    "files.label": "Images, a PDF or a video",
    "files.hint": "Drop files here or choose them",
    "files.remove": "Remove {name}",
    "question.label": "Question",
    "question.placeholder": "What does this chart show?",
    options: "Options",
    maxTokens: "Max tokens",
    temperature: "Temperature",
    "json.mode": "JSON mode (answer follows a JSON Schema)",
    "json.example": "Example schema",
    "json.schema": "JSON Schema",
    "json.parsed": "Parsed JSON",
    "json.valid": "Valid against the schema.",
    "json.invalid": "Does not match the schema: {problems}",
    "json.notJson": "The answer is not JSON: {message}",
    "json.badSchema": "The schema is not valid JSON: {message}",
    ask: "Ask",
    stop: "Stop",
    "doc.run": "Read as document job",
    "doc.progress": "Pages",
    "doc.count": "{done} of {total} pages ({status})",
    "doc.page": "Page {page}",
    "doc.needsFiles": "Choose a PDF or images to read as a document job.",
    answer: "Answer",
    "status.sending": "Sending…",
    "status.streaming": "Streaming…",
    "status.done": "Done ({reason}).",
    "status.stopped": "Stopped.",
    "status.queued": "Job {id} submitted.",
    "status.jobDone": "Job {id}: {status}.",
    "status.cancelled": "Job cancelled.",
    "error.pdfInChat": "A PDF is read page by page: use “Read as document job”.",
    "error.empty": "Type a question or add a file.",
    "error.network": "The server could not be reached: {message}",
    "error.http": "HTTP {status}",
    "meta.trace": "Trace id",
    "meta.usage": "Usage",
    "meta.usageValue": "{prompt} prompt + {completion} completion = {total} tokens",
    "meta.tokens": "{completion} completion tokens",
    "meta.ttft": "Time to first token",
    "meta.total": "Total latency",
    apiDocs: "API reference",
  },
  zh: {
    skip: "跳到问题",
    title: "vlserve 试用页",
    model: "模型",
    "lang.hint": "切换页面语言",
    "key.change": "API 密钥",
    "key.heading": "API 密钥",
    "key.needed": "此服务器需要 API 密钥。密钥只保存在当前标签页（会话存储）中，以 Bearer 令牌发送，从不出现在网址里。",
    "key.rejected": "服务器拒绝了此密钥：{message}",
    "key.label": "密钥",
    "key.use": "使用密钥",
    "key.forget": "清除密钥",
    "ask.heading": "提问",
    "files.label": "图片、PDF 或视频",
    "files.hint": "把文件拖到这里，或点击选择",
    "files.remove": "移除 {name}",
    "question.label": "问题",
    "question.placeholder": "这张图表说明了什么？",
    options: "选项",
    maxTokens: "最大令牌数",
    temperature: "温度",
    "json.mode": "JSON 模式（回答遵循 JSON Schema）",
    "json.example": "示例 Schema",
    "json.schema": "JSON Schema",
    "json.parsed": "解析后的 JSON",
    "json.valid": "符合 Schema。",
    "json.invalid": "不符合 Schema：{problems}",
    "json.notJson": "回答不是 JSON：{message}",
    "json.badSchema": "Schema 不是有效的 JSON：{message}",
    ask: "提问",
    stop: "停止",
    "doc.run": "作为文档任务读取",
    "doc.progress": "页数",
    "doc.count": "已完成 {done} / {total} 页（{status}）",
    "doc.page": "第 {page} 页",
    "doc.needsFiles": "请选择要作为文档任务读取的 PDF 或图片。",
    answer: "回答",
    "status.sending": "发送中…",
    "status.streaming": "正在生成…",
    "status.done": "完成（{reason}）。",
    "status.stopped": "已停止。",
    "status.queued": "任务 {id} 已提交。",
    "status.jobDone": "任务 {id}：{status}。",
    "status.cancelled": "任务已取消。",
    "error.pdfInChat": "PDF 需要逐页读取：请使用“作为文档任务读取”。",
    "error.empty": "请输入问题或添加文件。",
    "error.network": "无法连接服务器：{message}",
    "error.http": "HTTP {status}",
    "meta.trace": "追踪 ID",
    "meta.usage": "用量",
    "meta.usageValue": "提示 {prompt} + 生成 {completion} = {total} 个令牌",
    "meta.tokens": "生成 {completion} 个令牌",
    "meta.ttft": "首个令牌耗时",
    "meta.total": "总耗时",
    apiDocs: "API 参考",
  },
};

const STORE = "vlserve.lang";
let current = "en";

export function initialLanguage() {
  const chosen = localStorage.getItem(STORE);
  if (chosen && chosen in STRINGS) return chosen;
  const preferred = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  for (const tag of preferred) {  // the first of the two the user ranks higher
    const lower = tag.toLowerCase();
    if (lower.startsWith("zh")) return "zh";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

/** The string `key` in the current language, with `{name}` placeholders filled from `values`. */
export function t(key, values = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

export function language() {
  return current;
}

/** Switch to `lang` (remembered in this browser), relabelling every element marked data-i18n. */
export function applyLanguage(lang, remember = false) {
  current = lang in STRINGS ? lang : "en";
  if (remember) localStorage.setItem(STORE, current);
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  document.title = t("title");
  const other = current === "zh" ? "en" : "zh";
  const button = document.getElementById("lang-switch");
  button.textContent = other === "zh" ? "中文" : "English";
  button.lang = other === "zh" ? "zh-CN" : "en";
  button.dataset.target = other;
}
