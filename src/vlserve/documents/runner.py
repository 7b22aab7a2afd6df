"""The document worker of one server: claims pages, reads them, stores results, ends jobs, sends webhooks.

``concurrency`` pages are in flight at once, so the engine batches them. Each claimed page is held under
a lease that a heartbeat renews, by a worker name unique to this process (no two processes share one, even
with the same ``VLSERVE_WORKER_ID``). A server killed mid-page leaves the page to be taken over by any
worker when its lease runs out (``document_lease_s``); a server that stops cleanly (SIGTERM) claims no new
page, lets the pages in hand finish until its shutdown deadline, and hands the rest back at once. Results
are stored page by page, so nothing finished is recomputed and nothing is lost. Ended jobs are deleted
``document_retention_days`` after they ended (checked at start, then hourly).

A cancelled job's pages in hand are aborted, not read to the end: at once when the job was cancelled through
this server (:meth:`DocumentRunner.abort`), within ``document_poll_s`` when another server sharing the
database cancelled it (one query for all the pages in hand finds them). Aborting cancels the task reading the
page, which closes the engine's stream: the engine drops the generation at its next decode step (an upstream
engine's HTTP stream is closed), the page's place with the engine is given back, and nothing is stored for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from vlserve.documents.pipeline import PageTask, page_prompt, read_page
from vlserve.documents.sources import PageSource
from vlserve.documents.views import webhook_payload
from vlserve.documents.webhook import WebhookSender
from vlserve.errors import RateLimitError, ServiceUnavailableError, VLServeError
from vlserve.observability.accounting import RequestRecord, current_record
from vlserve.observability.response_watch import CLIENT_CLOSED
from vlserve.security.audit import AuditEntry
from vlserve.security.quotas import OwnerQuota
from vlserve.service import GenerationService
from vlserve.settings import Settings
from vlserve.store.jobs import ClaimedPage, JobStore, PageOutcome
from vlserve.store.models import ENDED
from vlserve.structured import OutputFormat

log = logging.getLogger("vlserve.documents")

PURGE_EVERY_S = 3600.0
PAGE_UNREADABLE = 422  # a page's audit status when every attempt broke the schema or the token limit


@dataclass(eq=False)
class _InHand:
    """A page this worker holds: its job, and the task reading it with the engine while one is."""

    page_id: int
    document_id: str
    reading: asyncio.Task | None = None
    aborted: bool = False

    def abort(self) -> None:
        """Nobody needs the page any more: stop reading it (or never start)."""
        self.aborted = True
        if self.reading is not None:
            self.reading.cancel()


class DocumentRunner:
    def __init__(
        self,
        store: JobStore,
        generation: GenerationService,
        source: PageSource,
        settings: Settings,
        quota: OwnerQuota | None = None,
    ) -> None:
        self._store = store
        self._quota = quota  # the owner keys' tokens per day (None: not counted)
        self._generation = generation
        self._source = source
        self._settings = settings
        self.worker = settings.worker_name()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._finishing: list[asyncio.Task] = []  # page loops and the webhook sender: let run to a deadline
        self._stopping = False  # draining: claim nothing new
        self._deadline: float | None = None  # draining: work in hand may finish until then (event-loop time)
        self._in_hand: set[_InHand] = set()  # the pages being processed (a page put back may be twice)
        self.on_page: Callable[[str, float], None] | None = None  # each page read: outcome, seconds (metrics)
        self.on_audit: Callable[[AuditEntry], Awaitable[None]] | None = None  # each page's audit record

    def wake(self) -> None:
        """A job was submitted or ended: look for work now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        """Start the page loops, the lease heartbeat, the cancellation watch, the webhook sender and the retention
        purge. Nothing is taken back at start: this process's worker name is new, and a dead one's pages come back
        by lease."""
        pages = [self._pages() for _ in range(self._settings.page_concurrency())]
        self._finishing = [asyncio.create_task(loop, name="vlserve-document-pages") for loop in pages]
        self._finishing.append(asyncio.create_task(self._webhooks(), name="vlserve-webhooks"))
        others = [
            asyncio.create_task(self._heartbeat(), name="vlserve-document-leases"),
            asyncio.create_task(self._watch(), name="vlserve-document-cancellations"),
            asyncio.create_task(self._purge(), name="vlserve-document-retention"),
        ]
        self._tasks = [*self._finishing, *others]

    def abort(self, document_id: str) -> None:
        """The job was cancelled through this server: stop reading its pages in hand now."""
        for held in self._in_hand:
            if held.document_id == document_id:
                held.abort()

    def stop_claiming(self, deadline: float) -> None:
        """Draining: claim no new page or webhook; what is in hand may finish until ``deadline`` (loop time)."""
        self._stopping, self._deadline = True, deadline
        self._wake.set()

    async def stop(self) -> None:
        """Stop the worker. While draining, pages in hand may finish until the deadline; then whatever is
        still running is cancelled and its pages are handed back at once (queued for any worker)."""
        self._stopping = True
        self._wake.set()
        if self._deadline is not None and self._finishing:
            remaining = self._deadline - asyncio.get_running_loop().time()
            if remaining > 0:
                await asyncio.wait(self._finishing, timeout=remaining)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks, self._finishing = [], []
        released = await asyncio.to_thread(self._store.release_worker, self.worker)
        if released:
            log.info("document worker %s stopped: %d unfinished page(s) handed back", self.worker, released)

    async def _idle(self) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._settings.document_poll_s)
        self._wake.clear()

    async def _pages(self) -> None:
        while not self._stopping:
            try:
                page = await asyncio.to_thread(self._store.claim, self.worker, self._settings.document_lease_s)
            except Exception:  # the database may be restarting: keep trying
                log.exception("claiming a page failed")
                page = None
            if page is None:
                await self._idle()
                continue
            held = _InHand(page.page_id, page.document_id)
            self._in_hand.add(held)
            try:
                await self._process(page, held)
            except Exception:  # the database went away mid-page: the lease runs out and the page is retried
                log.exception("document %s page %d: could not be stored", page.document_id, page.page_number)
                await asyncio.sleep(self._settings.document_poll_s)
            finally:
                self._in_hand.discard(held)

    async def _process(self, page: ClaimedPage, held: _InHand) -> None:
        """Read one page and store its outcome. What it used (tokens, model) is noted on a record of its own,
        which the owner's token budget reads and which becomes the page's audit record."""
        record = RequestRecord()
        recording = current_record.set(record)
        started = time.monotonic()
        try:
            status = await self._read_and_store(page, held)
        finally:
            current_record.reset(recording)
        if status is not None and self.on_audit is not None:  # None: put back unread, nothing was done
            entry = AuditEntry.of_page(
                page.document_id, page.page_number, owner=page.owner, status=status, record=record,
                seconds=time.monotonic() - started,
            )  # fmt: skip
            await self.on_audit(entry)

    async def _read_and_store(self, page: ClaimedPage, held: _InHand) -> int | None:
        """The page read and its outcome stored; returns how it ended as an HTTP status for the audit trail
        (200 read, 499 aborted or taken over, the error's status when it failed), None when it was put back."""
        options = page.options
        name, depth = page.schema_name or "schema", self._settings.max_json_depth
        output = None if page.schema_json is None else OutputFormat(name, page.schema_json, depth)
        rendered = time.monotonic()
        # The owner key's tokens per day: a page is refused once they are spent (put back while the owner's pages
        # in progress have reserved them); each attempt reserves its worst case, and it is charged what it used.
        counted = contextlib.nullcontext() if self._quota is None else self._quota.page(page.owner)
        try:
            async with counted:
                image = await self._source.render(page, options["longest_side"])
                render_ms = round((time.monotonic() - rendered) * 1000)
                task = PageTask(
                    image=image,
                    prompt=page_prompt(page.prompt, output),
                    output=output,
                    temperatures=options["temperatures"],
                    max_tokens=options["max_tokens"],
                    seed=zlib.crc32(f"{page.document_id}:{page.position}".encode()),
                )
                outcome = await self._read(page, task, held)
                if outcome is not None and outcome.detail is not None:
                    outcome.detail.update(render_ms=render_ms, worker=self.worker)
        except (RateLimitError, ServiceUnavailableError) as exc:  # busy, not broken: try the page again later
            log.info("document %s page %d: put back (%s)", page.document_id, page.page_number, exc.message)
            await asyncio.to_thread(self._store.put_back, page.page_id, self.worker)
            await asyncio.sleep(self._settings.document_poll_s)
            return None
        except VLServeError as exc:  # e.g. an image file that cannot be decoded: this page fails, the job goes on
            # (so does QuotaExceededError, the owner's tokens for today spent: not a busy engine, no retry)
            outcome, status = PageOutcome("failed", 0, error=exc.message), exc.status_code
        except Exception:
            log.exception("page %d of %s failed", page.page_number, page.document_id)
            outcome, status = PageOutcome("failed", 0, error="reading the page failed; see the server log"), 500
        else:  # read: succeeded, or failed every attempt at the schema or the token limit
            status = PAGE_UNREADABLE if outcome is not None and outcome.status == "failed" else 200
        if outcome is None or not await asyncio.to_thread(self._store.finish_page, page.page_id, self.worker, outcome):
            log.info("document %s page %d: given up (cancelled or taken over)", page.document_id, page.page_number)
            doc = await asyncio.to_thread(self._store.get, page.document_id)
            if doc is None or doc.status in ENDED:  # cancelled: its cached files are no longer needed here
                await asyncio.to_thread(self._source.forget, page.document_id)
            status = CLIENT_CLOSED
        else:
            log.info(
                "document %s page %d: %s after %d attempt(s)",
                page.document_id, page.page_number, outcome.status, outcome.attempts,
            )  # fmt: skip
            if self.on_page is not None:
                self.on_page(outcome.status, time.monotonic() - rendered)
        ended = await asyncio.to_thread(self._store.end_if_done, page.document_id)
        if ended is not None:
            log.info("document %s %s", ended.id, ended.status)
            await asyncio.to_thread(self._source.forget, ended.id)
            self.wake()
        return status

    async def _read(self, page: ClaimedPage, task: PageTask, held: _InHand) -> PageOutcome | None:
        """The page's outcome, or None when it was aborted (see :meth:`_InHand.abort`) before or while being read.
        The reading runs in its own task, so that an abort cancels it alone: the engine's stream is closed and
        the admission slot given back, and this worker goes on to its next page."""
        if held.aborted:
            return None
        held.reading = asyncio.create_task(read_page(self._generation, task, wanted=lambda: self._wanted(page)))
        try:
            return await held.reading
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not held.aborted or (current is not None and current.cancelling()):  # the worker is stopping
                raise
            log.info("document %s page %d: reading aborted, nobody needs the page", page.document_id, page.page_number)
            return None
        finally:
            held.reading = None

    async def _wanted(self, page: ClaimedPage) -> bool:
        return await asyncio.to_thread(self._store.still_wanted, page.page_id, self.worker)

    async def _watch(self) -> None:
        """Every ``document_poll_s``, one query for all the pages in hand: those no longer wanted (their job was
        cancelled through another server, or their lease was lost) are aborted."""
        while True:
            await asyncio.sleep(self._settings.document_poll_s)
            held = [h for h in self._in_hand if not h.aborted]
            if not held:
                continue
            try:
                wanted = await asyncio.to_thread(self._store.wanted, self.worker, sorted({h.page_id for h in held}))
            except Exception:  # the database may be restarting: the next round looks again
                log.exception("checking the pages in hand for cancellation failed")
                continue
            for h in held:
                if h.page_id not in wanted:
                    h.abort()

    async def _heartbeat(self) -> None:
        lease = self._settings.document_lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await asyncio.to_thread(self._store.renew, self.worker, lease)
            except Exception:
                log.exception("renewing page leases failed")

    async def _webhooks(self) -> None:
        s = self._settings
        async with WebhookSender(allowlist=s.url_allowlist, timeout=s.webhook_timeout) as sender:
            while not self._stopping:
                lease = s.webhook_timeout * s.webhook_attempts * 8
                try:
                    doc = await asyncio.to_thread(self._store.claim_webhook, lease)
                except Exception:
                    log.exception("claiming a webhook failed")
                    doc = None
                if doc is None:
                    await self._idle()
                    continue
                secret = s.webhook_secret or doc.webhook_secret or ""
                result = await sender.deliver(
                    doc.webhook_url, secret, f"document.{doc.status}", webhook_payload(doc),
                    attempts=s.webhook_attempts,
                )  # fmt: skip
                log.info("webhook for %s: %s after %d attempt(s)", doc.id, result.delivered, result.attempts)
                await asyncio.to_thread(
                    self._store.record_webhook, doc.id, delivered=result.delivered, attempts=result.attempts,
                    error=result.error,
                )  # fmt: skip

    async def _purge(self) -> None:
        """Delete jobs that ended more than ``document_retention_days`` ago: now, then every hour."""
        days = self._settings.document_retention_days
        while True:
            try:
                purged = await asyncio.to_thread(self._store.purge_ended, timedelta(days=days))
            except Exception:  # the database may be restarting: the next round catches up
                log.exception("deleting expired document jobs failed")
            else:
                if purged:
                    log.info("retention: deleted %d document job(s) that ended more than %g day(s) ago", purged, days)
            await asyncio.sleep(PURGE_EVERY_S)
