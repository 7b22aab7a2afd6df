"""What `vlserve ask` does: send images or videos and a question to a server (or a local engine), print the answer."""

from __future__ import annotations

import base64
import json
import mimetypes
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from vlserve.settings import Settings


def image_to_data_url(path: str | Path) -> str:
    """The file as a data URL; the server, not the client, decides whether it is a usable image."""
    data = Path(path).read_bytes()
    mime = mimetypes.guess_type(str(path))[0]
    if mime is None or not mime.startswith("image/"):
        mime = "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


VIDEO_SUFFIXES = (".mp4", ".m4v", ".webm", ".mov")


def is_video(source: str) -> bool:
    """A video file or URL, by its name (or a data:video/ URL); anything else is sent as an image."""
    if source.startswith("data:"):
        return source[5:11].lower() == "video/"
    return source.split("?", 1)[0].lower().endswith(VIDEO_SUFFIXES)


def video_to_data_url(path: str | Path) -> str:
    mime = {".webm": "video/webm", ".mov": "video/quicktime"}.get(Path(path).suffix.lower(), "video/mp4")
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"


def image_part(source: str) -> dict:
    """A content part for an image or a video file (read here), or for a URL (fetched by the server)."""
    remote = source.startswith(("http://", "https://", "data:"))
    if is_video(source):
        return {"type": "video_url", "video_url": {"url": source if remote else video_to_data_url(source)}}
    url = source if remote else image_to_data_url(source)
    return {"type": "image_url", "image_url": {"url": url}}


_HINTS = {
    401: "set VLSERVE_API_KEY (or pass --api-key) to a key from `vlserve keys create`",
    403: "the API key lacks the scope this needs (see `vlserve keys list`)",
}


def _http_failure(response: httpx.Response) -> str:
    """``HTTP <status>: <the server's message>``, with what to do about it where that is known."""
    status = response.status_code
    try:
        text = f"HTTP {status}: {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        text = f"HTTP {status}"
    if status in _HINTS:
        text += f" ({_HINTS[status]})"
    retry = response.headers.get("Retry-After")
    if status in (429, 503) and retry:
        text += f" (retry after {retry} s)"
    return text


def describe_failure(exc: BaseException) -> str:
    """One line for a CLI user: what went wrong, never a traceback."""
    if isinstance(exc, httpx.HTTPStatusError):
        return _http_failure(exc.response)
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach the server ({exc}); start it with `vlserve serve` or pass --local"
    if isinstance(exc, httpx.TimeoutException):
        return "the server did not answer in time; it may be overloaded, try again later"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return f"invalid server URL: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to the server failed ({type(exc).__name__}: {exc})"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if isinstance(exc, json.JSONDecodeError):
        return "the server's answer is not JSON; is --url a vlserve server?"
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split()) or type(exc).__name__


def ask_remote(
    url: str,
    images: Sequence[str],
    prompt: str,
    *,
    max_tokens: int | None,
    temperature: float | None,
    api_key: str | None = None,
) -> None:
    body: dict = {
        "messages": [{"role": "user", "content": [*map(image_part, images), {"type": "text", "text": prompt}]}],
        "stream": True,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = url.rstrip("/") + "/v1/chat/completions"
    with httpx.stream("POST", endpoint, json=body, headers=headers, timeout=httpx.Timeout(600, connect=10)) as r:
        if r.status_code >= 400:
            r.read()
            r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            for choice in chunk.get("choices", []):
                sys.stdout.write(choice["delta"].get("content") or "")
                sys.stdout.flush()
    sys.stdout.write("\n")


async def ask_local(
    settings: Settings, images: Sequence[str], prompt: str, *, max_tokens: int | None, temperature: float | None
) -> None:
    from vlserve.engine import ChatTurn, EngineRequest, SamplingParams
    from vlserve.media.sources import EncodedImage
    from vlserve.runtime import open_runtime

    files = [EncodedImage(Path(p).read_bytes(), p, "video" if is_video(p) else "image") for p in images]
    async with open_runtime(settings.model_copy(update={"warmup": False}), documents=False, load=True) as runtime:
        generation = runtime.generation
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
        media = await generation.decode_images(files)  # each file's limits, videos sampled as the server does
        parts = (*({"type": item.kind} for item in media), {"type": "text", "text": prompt})
        prepared = await generation.prepare(EngineRequest((ChatTurn("user", parts),), media))
        async for delta in await generation.stream(prepared, params):
            sys.stdout.write(delta.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
