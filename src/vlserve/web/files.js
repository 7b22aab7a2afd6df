// The files the user dropped or picked: previews (blob: URLs), and their contents as data: URLs for a chat
// request or as parts of a multipart document upload.
import { t } from "./i18n.js";

export function kindOf(file) {
  if (file.type === "application/pdf" || /\.pdf$/i.test(file.name)) return "pdf";
  if (file.type.startsWith("video/") || /\.(mp4|webm|mov)$/i.test(file.name)) return "video";
  return "image";
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The chosen files, shown as a list with previews and a remove button each. */
export class Attachments {
  constructor(list) {
    this.list = list;
    this.items = [];
  }

  get files() {
    return this.items.map((item) => item.file);
  }

  add(files) {
    for (const file of files) this.items.push({ file, kind: kindOf(file), preview: null });
    this.render();
  }

  remove(index) {
    const [item] = this.items.splice(index, 1);
    if (item?.preview) URL.revokeObjectURL(item.preview);
    this.render();
  }

  has(kind) {
    return this.items.some((item) => item.kind === kind);
  }

  /** Chat content parts for the images and videos, in order ("Picture 1", "Video 1" to the model). */
  async contentParts() {
    const parts = [];
    for (const { file, kind } of this.items) {
      const url = await readAsDataUrl(file);
      parts.push(kind === "video" ? { type: "video_url", video_url: { url } } : { type: "image_url", image_url: { url } });
    }
    return parts;
  }

  render() {
    this.list.replaceChildren(
      ...this.items.map((item, index) => {
        const row = document.createElement("li");
        if (item.kind !== "pdf" && !item.preview) item.preview = URL.createObjectURL(item.file);
        if (item.kind === "image") {
          const img = document.createElement("img");
          img.src = item.preview;
          img.alt = "";
          row.append(img);
        } else if (item.kind === "video") {
          const video = document.createElement("video");
          video.src = item.preview;
          video.muted = true;
          video.preload = "metadata";
          row.append(video);
        } else {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = "PDF";
          row.append(badge);
        }
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = `${item.file.name} · ${size(item.file.size)}`;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "remove";
        remove.textContent = "×";
        remove.setAttribute("aria-label", t("files.remove", { name: item.file.name }));
        remove.addEventListener("click", () => this.remove(index));
        row.append(name, remove);
        return row;
      }),
    );
  }
}
