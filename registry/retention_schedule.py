"""The retention schedule: the registry process applies the projects' retention rules itself, every
`interval`, one replica at a time.

    retention_schedule:
      interval: 24h   # how often (number of seconds, or <n>s/m/h/d)
      grace: 1h       # untagged manifests younger than this are spared (a push in progress); default 1h
      lease: 1h       # a run holding the lease longer is presumed dead (default 1h)

Replicas sharing the storage (and the workers of one process) coordinate through a lease chain in it:
`leases/retention/<n>` (n = 0, 1, ...), each `{"holder", "started", "expires", "finished"}`. The newest
is the current one. A replica wakes every min(interval, 60 s) (at least 1 s); if the current lease is neither running
(unfinished and unexpired) nor younger than `interval`, it creates lease n+1 with the driver's
`put_if_absent` (atomic across processes: exactly one replica wins it), drops the older ones, runs
retention with the server's own store and gate, and marks its lease finished. A holder that dies is
replaced once its lease expires. Blobs the pass leaves unreferenced go with the next `trustreg gc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from registry.enforcement import GATE
from registry.handlers.common import SETTINGS, STORE
from registry.retention import DEFAULT_GRACE, apply_retention
from storage.base import PathNotFoundError, StorageDriver

log = logging.getLogger("trustreg.retention")
LEASES = "leases/retention"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WAKE, MIN_WAKE = 60.0, 1.0  # seconds between two looks at the lease


def seconds(value: Any) -> float:
    """A duration: a number of seconds, or `<n>s|m|h|d`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*", str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


class Lease:
    """The lease chain in storage (see the module docstring)."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.holder = uuid.uuid4().hex

    async def _newest(self) -> tuple[int, dict[str, Any] | None]:
        numbers = sorted(int(n) for n in await self.driver.list(LEASES) if n.isdigit())
        if not numbers:
            return -1, None
        try:
            return numbers[-1], json.loads(await self.driver.get(f"{LEASES}/{numbers[-1]}"))
        except (PathNotFoundError, ValueError):
            return numbers[-1], {}  # unreadable: treated as expired

    async def acquire(self, interval: float, lease: float) -> int | None:
        """The number of the lease this replica now holds, or None (another runs, or ran recently)."""
        number, current = await self._newest()
        now = time.time()
        if current is not None:
            running = not current.get("finished") and now < float(current.get("expires", 0))
            if running or now - float(current.get("started", 0)) < interval:
                return None
        record = {"holder": self.holder, "started": now, "expires": now + lease, "finished": None}
        if not await self.driver.put_if_absent(f"{LEASES}/{number + 1}", json.dumps(record).encode()):
            return None  # another replica won this turn
        for old in await self.driver.list(LEASES):
            if old.isdigit() and int(old) <= number:
                with contextlib.suppress(PathNotFoundError):
                    await self.driver.delete(f"{LEASES}/{old}")
        return number + 1

    async def release(self, number: int, started: float) -> None:
        record = {"holder": self.holder, "started": started, "expires": started, "finished": time.time()}
        await self.driver.put(f"{LEASES}/{number}", json.dumps(record).encode())


def schedule_of(raw: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """(interval, grace, lease) in seconds, None without a schedule."""
    section = raw.get("retention_schedule")
    if not section:
        return None
    return (seconds(section["interval"]), seconds(section.get("grace", DEFAULT_GRACE)),
            seconds(section.get("lease", 3600)))


async def run_once(app: web.Application, lease: Lease) -> bool:
    """One turn: take the lease if it is this replica's turn and apply retention; True if it ran."""
    raw = app[SETTINGS].raw
    schedule = schedule_of(raw)
    if schedule is None:
        return False
    interval, grace, duration = schedule
    number = await lease.acquire(interval, duration)
    if number is None:
        return False
    started = time.time()
    try:
        report = await apply_retention(app[STORE], app[GATE], raw, grace=grace)
        log.info("retention schedule: %d tags, %d manifests deleted", len(report.tags), len(report.manifests))
    finally:
        await lease.release(number, started)
    return True


def setup(app: web.Application) -> None:
    """Run the schedule in the background while the app serves, if the configuration has one."""
    if schedule_of(app[SETTINGS].raw) is None:
        return

    async def loop() -> None:
        lease = Lease(app[STORE].driver)
        while True:
            schedule = schedule_of(app[SETTINGS].raw)
            await asyncio.sleep(max(min(schedule[0] if schedule else MAX_WAKE, MAX_WAKE), MIN_WAKE))
            try:
                await run_once(app, lease)
            except Exception:  # a failed pass is logged and retried next turn, never kills the server
                log.exception("retention schedule: the pass failed")

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(lifetime)
