"""What `vlserve ask` does: send images and a question to a server (or a local engine), print the answer."""

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


def image_part(source: str) -> dict:
    url = source if source.startswith(("http://", "https://", "data:")) else image_to_data_url(source)
    return {"type": "image_url", "image_url": {"url": url}}


def describe_failure(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            return f"HTTP {exc.response.status_code}: {exc.response.json()['error']['message']}"
        except (ValueError, KeyError, TypeError):
            return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach the server ({exc}); start it with `vlserve serve` or pass --local"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    message = getattr(exc, "message", None) or str(exc)
    return message or type(exc).__name__


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
    from vlserve.media import load_image
    from vlserve.runtime import open_runtime

    limits = settings.image_limits()
    decoded = [load_image(Path(p).read_bytes(), limits, param=p) for p in images]
    async with open_runtime(settings.model_copy(update={"warmup": False}), documents=False, load=True) as runtime:
        generation = runtime.generation
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
        prepared = await generation.prepare(EngineRequest.chat([ChatTurn.user(prompt, len(decoded))], decoded))
        async for delta in await generation.stream(prepared, params):
            sys.stdout.write(delta.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
