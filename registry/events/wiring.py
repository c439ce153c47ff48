"""Events in the application: the `events` config section, the outbox on the registry's storage
driver, the delivery worker's lifetime, and `Events.emit` for the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from registry.events.config import EventsConfig, parse
from registry.events.delivery import Deliverer
from registry.events.outbox import Outbox
from registry.events.record import Record, make_body, new_id
from registry.handlers.common import DRIVER, SETTINGS
from registry.metrics import EVENTS_DROPPED, child
from registry.summary import base_url

log = logging.getLogger("trustreg.events")


class Events:
    """Records events in the outbox for the worker to deliver; never waits for an endpoint."""

    def __init__(self, config: EventsConfig, outbox: Outbox, deliverer: Deliverer, source: str) -> None:
        self.config = config
        self.outbox = outbox
        self.deliverer = deliverer
        self.source = source

    def wanted(self, event_type: str) -> bool:
        return bool(self.config.wanting(event_type))

    async def emit(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        """Append one event for the endpoints that want its type: one small storage write. Beyond
        `max_pending` waiting events, or when storage fails, the event is dropped, counted and logged
        (the request that caused it goes on)."""
        endpoints = self.config.wanting(event_type)
        if not endpoints:
            return
        if self.deliverer.pending >= self.config.max_pending:
            self._dropped(endpoints, event_type, subject, f"the outbox holds {self.config.max_pending} events")
            return
        event_id = new_id()
        try:
            body = make_body(event_type, self.source, subject, data, event_id)
            await self.outbox.append(Record(event_id, event_type, body, endpoints))
        except Exception as exc:  # an event must never fail the push, pull or publish it describes
            self._dropped(endpoints, event_type, subject, f"{type(exc).__name__}: {exc}")
            return
        self.deliverer.appended()

    def _dropped(self, endpoints: tuple[str, ...], event_type: str, subject: str, why: str) -> None:
        for name in endpoints:
            child(EVENTS_DROPPED, name).inc()
        log.warning("event %s %s dropped: %s", event_type, subject, why)


EVENTS = web.AppKey("events", Events)


def setup(app: web.Application) -> None:
    """Read `events`; with endpoints, keep `app[EVENTS]` and run the delivery worker while the app runs."""
    settings = app[SETTINGS]
    config = parse(settings.raw.get("events"))  # ConfigError at start: bad names, unset secrets
    if config is None:
        return
    outbox = Outbox(app[DRIVER], f"{socket.gethostname()}:{os.getpid()}")
    deliverer = Deliverer(outbox, config)
    app[EVENTS] = Events(config, outbox, deliverer, config.source or base_url(settings))

    async def worker(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(deliverer.run())
        yield
        while not task.done():  # cancelled again should a cancellation ever be lost: shutdown never hangs
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    app.cleanup_ctx.append(worker)
