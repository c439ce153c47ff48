"""The delivery worker, one per process: scans the shared outbox, claims attempts (registry.events.outbox)
and POSTs them, each endpoint independently (at most `concurrency` in flight), so a slow or dead
endpoint delays only its own events and never a request.

A failed attempt (timeout, connection error, non-2xx answer; redirects are not followed) is retried
after an exponential backoff; after `retry.max_attempts` attempts, or once the event is older than
`retry.max_age`, it is dead-lettered. Scans happen every `poll_seconds` and at once after an event is
appended in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from registry.events.config import Endpoint, EventsConfig
from registry.events.outbox import Attempt, Outbox
from registry.events.record import CONTENT_TYPE, SIGNATURE_HEADER, Record, signature
from registry.metrics import (
    EVENTS_DEAD,
    EVENTS_DELIVERED,
    EVENTS_FAILED,
    EVENTS_LATENCY,
    EVENTS_QUEUE,
    child,
)

log = logging.getLogger("trustreg.events")
SWEEP_SECONDS = 600.0
READ_BATCH = 32  # records read at once by a scan (a fresh process reads the whole outbox once)
USER_AGENT = "trustreg-events/1"


class Deliverer:
    def __init__(self, outbox: Outbox, config: EventsConfig, clock: Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self.config = config
        self.clock = clock
        self.endpoints = {e.name: e for e in config.endpoints}
        self.pending = 0  # records in the outbox at the last scan, plus those appended here since
        self._appends = 0
        self._records: dict[str, Record | None] = {}  # None: gone or unreadable, skipped while listed
        self._not_before: dict[tuple[str, str], float] = {}
        self._finished: set[tuple[str, str]] = set()
        self._inflight: dict[str, set[str]] = {name: set() for name in self.endpoints}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._last_sweep = 0.0
        self._session: aiohttp.ClientSession | None = None

    def appended(self) -> None:
        """An event was just appended by this process: count it and scan now."""
        self.pending += 1
        self._appends += 1
        self._wake.set()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        try:
            while True:
                try:
                    await self.scan()
                except Exception:  # storage unavailable and the like: try again at the next scan
                    log.exception("event outbox scan failed")
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
                # lands as the wait ends, and the worker then never stops (a hang at shutdown).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.poll_seconds):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._session.close()

    async def scan(self) -> None:
        """One pass: list the outbox, start every attempt that is due and fits."""
        appends = self._appends
        ids = await self.outbox.pending()
        self.pending = len(ids) + self._appends - appends  # appended while listing: counted (maybe twice)
        live = set(ids)
        self._forget(live)
        depth = dict.fromkeys(self.endpoints, 0)
        now = self.clock()
        await self._read([i for i in ids if i not in self._records])
        for event_id in ids:
            record = self._records[event_id]
            if record is None:
                continue
            for name in (n for n in record.endpoints if n in self.endpoints):  # others: other replicas' config
                if (name, event_id) in self._finished:
                    continue
                depth[name] += 1
                inflight = self._inflight[name]
                due = self._not_before.get((name, event_id), 0.0) <= now
                if due and event_id not in inflight and len(inflight) < self.config.concurrency:
                    inflight.add(event_id)
                    task = asyncio.create_task(self._attempt(self.endpoints[name], event_id))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        for name, count in depth.items():
            child(EVENTS_QUEUE, name).set(count)
        if now - self._last_sweep > SWEEP_SECONDS:
            self._last_sweep = now
            expire_after = self.config.retry.max_age + 2 * self.config.lease_seconds + SWEEP_SECONDS
            await self.outbox.sweep(ids, expire_after, self.config.dead_letter_days * 86400)

    async def _read(self, ids: list[str]) -> None:
        """Read (and keep: records never change) the records not read yet, a batch at a time."""
        for start in range(0, len(ids), READ_BATCH):
            batch = ids[start:start + READ_BATCH]
            for event_id, record in zip(batch, await asyncio.gather(*map(self.outbox.record, batch)), strict=True):
                self._records[event_id] = record

    def _forget(self, live: set[str]) -> None:
        """Drop what this process remembers about records no longer in the outbox."""
        for event_id in [i for i in self._records if i not in live]:
            del self._records[event_id]
        self._finished = {k for k in self._finished if k[1] in live}
        self._not_before = {k: v for k, v in self._not_before.items() if k[1] in live}

    async def _attempt(self, endpoint: Endpoint, event_id: str) -> None:
        key = (endpoint.name, event_id)
        try:
            claim = await self.outbox.claim(endpoint.name, event_id, self.config.lease_seconds)
            if claim is None:
                self._finished.add(key)
            elif isinstance(claim, float):
                self._not_before[key] = claim
            else:
                await self._deliver(endpoint, claim)
        except Exception:
            log.exception("event %s to endpoint %s: outbox error", event_id, endpoint.name)
            self._not_before[key] = self.clock() + self.config.poll_seconds
        finally:
            self._inflight[endpoint.name].discard(event_id)
            self._wake.set()  # a slot is free: look for the next event at once

    async def _deliver(self, endpoint: Endpoint, attempt: Attempt) -> None:
        retry, key = self.config.retry, (endpoint.name, attempt.record.id)
        too_old = self.clock() - attempt.record.created > retry.max_age
        if too_old:
            await self._give_up(endpoint, attempt, attempt.number - 1, attempt.last_error or "too old")
            return
        error = await self.send(endpoint, attempt.record)
        if error is None:
            await self.outbox.delivered(attempt)
            child(EVENTS_DELIVERED, endpoint.name).inc()
            self._finished.add(key)
            return
        child(EVENTS_FAILED, endpoint.name).inc()
        log.info("event %s to endpoint %s: attempt %d failed: %s", attempt.record.id, endpoint.name,
                 attempt.number, error)
        if attempt.number >= retry.max_attempts:
            await self._give_up(endpoint, attempt, attempt.number, error)
            return
        retry_at = self.clock() + retry.backoff(attempt.number)
        await self.outbox.failed(attempt, retry_at, error)
        self._not_before[key] = retry_at

    async def _give_up(self, endpoint: Endpoint, attempt: Attempt, attempts: int, error: str) -> None:
        await self.outbox.dead(attempt, attempts, error)
        child(EVENTS_DEAD, endpoint.name).inc()
        self._finished.add((endpoint.name, attempt.record.id))
        log.warning("event %s (%s) to endpoint %s dead-lettered after %d attempts: %s", attempt.record.id,
                    attempt.record.type, endpoint.name, attempts, error)

    async def send(self, endpoint: Endpoint, record: Record) -> str | None:
        """POST the event; None when the endpoint accepted it (2xx), else what went wrong."""
        assert self._session is not None
        headers = {"Content-Type": CONTENT_TYPE}
        if endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = signature(endpoint.secret, record.body)
        started = time.perf_counter()
        try:
            async with self._session.post(
                endpoint.url, data=record.body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            ) as resp:
                await resp.content.read(64 * 1024)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        finally:
            child(EVENTS_LATENCY, endpoint.name).observe(time.perf_counter() - started)
        return None if 200 <= status < 300 else f"HTTP {status}"
