"""What one API request used, filled in by the layers that know it and read when the response ends.

The audit middleware opens a :class:`RequestRecord` per request in a context variable; the generation
service adds the model and token usage, the media loader the hash of every image, the documents API the
job it created (:func:`note_resource`). Code running outside a request finds no record and notes nothing,
unless it opens one itself (the document worker does, for each page it reads).
"""

from __future__ import annotations

import contextvars
import hashlib
from dataclasses import dataclass, field

from vlserve.engine.base import Usage


@dataclass
class RequestRecord:
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    image_tokens: int | None = None  # part of prompt_tokens
    first_token_s: float | None = None  # a streamed answer: engine submission to its first delta
    decode_s: float | None = None  # a streamed answer: its first delta to its last
    queue_wait_s: float | None = None  # how long it waited inside the engine before generation began
    error_code: str | None = None  # the ``code`` of the error envelope the request was answered with
    cache: str | None = None  # the response cache's outcome: hit, miss, coalesced, bypass (None: not cacheable)
    resource: str | None = None  # what the request created (a document job's id), for the audit trail
    image_hashes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # prompt text, kept only when audit_content is on
    images: list[bytes] = field(default_factory=list)  # image bytes, kept only when audit_content is on
    keep_content: bool = False

    @property
    def total_tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


current_record: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("request_record", default=None)


def note_model(model: str) -> None:
    record = current_record.get()
    if record is not None:
        record.model = model


def note_usage(usage: Usage) -> None:
    record = current_record.get()
    if record is not None:
        record.prompt_tokens = (record.prompt_tokens or 0) + usage.prompt_tokens
        record.completion_tokens = (record.completion_tokens or 0) + usage.completion_tokens
        record.image_tokens = (record.image_tokens or 0) + usage.image_tokens


def note_timing(first_token_s: float, decode_s: float) -> None:
    record = current_record.get()
    if record is not None:
        record.first_token_s, record.decode_s = first_token_s, decode_s


def note_queue_wait(seconds: float) -> None:
    """The wait before generation began; of several generations (n > 1), the longest."""
    record = current_record.get()
    if record is not None:
        record.queue_wait_s = max(record.queue_wait_s or 0.0, seconds)


def note_error(code: str | None) -> None:
    record = current_record.get()
    if record is not None and code:
        record.error_code = code


def note_cache(outcome: str) -> None:
    record = current_record.get()
    if record is not None:
        record.cache = outcome


def note_resource(resource_id: str) -> None:
    """The id of what the request created (a document job): its audit record names it."""
    record = current_record.get()
    if record is not None:
        record.resource = resource_id


def image_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def note_image(data: bytes) -> None:
    record = current_record.get()
    if record is not None:
        record.image_hashes.append(image_hash(data))
        if record.keep_content:
            record.images.append(data)


def note_text(text: str) -> None:
    record = current_record.get()
    if record is not None and record.keep_content:
        record.texts.append(text)
