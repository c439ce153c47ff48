"""The durable outbox, kept in storage so that every replica on one filesystem or one bucket shares it.

Layout (every object small; ids sort by creation time):

    events/outbox/<id>                       the Record (written once by the request that caused it)
    events/endpoints/<endpoint>/<id>/lease-<n>  attempt n's claim: {"owner", "until", "error"}
    events/endpoints/<endpoint>/<id>/done       delivered
    events/endpoints/<endpoint>/<id>/dead       given up (the dead letter is in events/dead/)
    events/dead/<endpoint>/<id>              the dead letter: body, attempts, last error

Rules:
- Attempt n of an event for an endpoint belongs to whoever creates `lease-<n>` (create-only
  `put_if_absent`, atomic across processes), so of two replicas exactly one sends it.
- Attempt n+1 may be claimed only once lease n's `until` has passed: `until` is the claim time plus
  the lease (while sending), or the time of the retry after a failure (backoff). A replica that dies
  while sending leaves a lease that expires, and another one takes over (at-least-once).
- `done`/`dead` are checked before and after claiming, and the record is read after claiming, so a
  finished or cleaned-up event is never sent again.
- A record is deleted once every endpoint it names is done or dead, then its state; the sweep removes
  state left behind by a crash between the two, dead letters past their age, and records past their
  expiry (an endpoint removed from the configuration, an unreadable record).
- Lease times are wall-clock times: replicas' clocks must agree to well within the lease margin.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from registry.events.record import Record, id_time
from storage.base import PathNotFoundError, StorageDriver

log = logging.getLogger("trustreg.events")
OUTBOX = "events/outbox"
STATE = "events/endpoints"
DEAD = "events/dead"
ORPHAN_AGE = 3600.0  # state of a record deleted this long ago (by id time) is swept


@dataclass(frozen=True)
class Attempt:
    """A claimed delivery attempt: number `number` (1-based) of `record` to `endpoint`."""

    endpoint: str
    record: Record
    number: int
    last_error: str | None

    @property
    def lease_key(self) -> str:
        return f"{STATE}/{self.endpoint}/{self.record.id}/lease-{self.number:06d}"


def _state(endpoint: str, event_id: str) -> str:
    return f"{STATE}/{endpoint}/{event_id}"


def _finished(names: Iterable[str]) -> bool:
    return any(n in ("done", "dead") for n in names)


class Outbox:
    def __init__(self, driver: StorageDriver, owner: str) -> None:
        self.driver = driver
        self.owner = owner

    async def append(self, record: Record) -> None:
        """The request path's only write: one small object."""
        await self.driver.put(f"{OUTBOX}/{record.id}", record.dumps())

    async def pending(self) -> list[str]:
        """Ids of the records not yet finished, oldest first."""
        return await self.driver.list(OUTBOX)

    async def record(self, event_id: str) -> Record | None:
        """The record, or None if it is gone or unreadable (the sweep removes it once expired)."""
        try:
            return Record.loads(await self.driver.get(f"{OUTBOX}/{event_id}"))
        except PathNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("unreadable event record %s: %s", event_id, exc)
            return None

    async def claim(self, endpoint: str, event_id: str, lease_seconds: float) -> Attempt | float | None:
        """The next attempt if this process won it; else the time before which another claim is
        pointless (float), or None when the event is finished (or gone) for this endpoint."""
        state = _state(endpoint, event_id)
        names = await self.driver.list(state)
        if _finished(names):
            return None
        leases = [n for n in names if n.startswith("lease-")]
        now = time.time()
        last_error = None
        if leases:
            try:
                last = json.loads(await self.driver.get(f"{state}/{leases[-1]}"))
            except PathNotFoundError:
                return None  # cleaned up under us
            if last["until"] > now:
                return float(last["until"])
            last_error = last.get("error")
        number = int(leases[-1].removeprefix("lease-")) + 1 if leases else 1
        lease = {"owner": self.owner, "until": now + lease_seconds, "error": None}
        if not await self.driver.put_if_absent(f"{state}/lease-{number:06d}", json.dumps(lease).encode()):
            return now  # another process took it: look again at the next scan
        if _finished(await self.driver.list(state)):
            return None
        record = await self.record(event_id)
        if record is None:  # finished and deleted while we looked: remove the lease we just made
            await self.driver.delete(state)
            return None
        return Attempt(endpoint, record, number, last_error)

    async def failed(self, attempt: Attempt, retry_at: float, error: str) -> None:
        """Keep the event to ourselves until `retry_at` (the backoff), remembering why."""
        lease = {"owner": self.owner, "until": retry_at, "error": error[:500]}
        await self.driver.put(attempt.lease_key, json.dumps(lease).encode())

    async def delivered(self, attempt: Attempt) -> None:
        await self.driver.put_if_absent(f"{_state(attempt.endpoint, attempt.record.id)}/done", b"{}")
        await self.finish_if_complete(attempt.record)

    async def dead(self, attempt: Attempt, attempts: int, error: str) -> None:
        """Give up: write the dead letter, mark the event dead for this endpoint."""
        letter = {"id": attempt.record.id, "endpoint": attempt.endpoint, "attempts": attempts,
                  "error": error[:500], "event": json.loads(attempt.record.body)}
        await self.driver.put(f"{DEAD}/{attempt.endpoint}/{attempt.record.id}", json.dumps(letter).encode())
        await self.driver.put_if_absent(f"{_state(attempt.endpoint, attempt.record.id)}/dead", b"{}")
        await self.finish_if_complete(attempt.record)

    async def finish_if_complete(self, record: Record) -> bool:
        """Delete the record (then its state) once every endpoint it names is finished."""
        for endpoint in record.endpoints:
            if not _finished(await self.driver.list(_state(endpoint, record.id))):
                return False
        await self._remove(record.id, record.endpoints)
        return True

    async def _remove(self, event_id: str, endpoints: Iterable[str]) -> None:
        await self.driver.delete(f"{OUTBOX}/{event_id}")
        for endpoint in endpoints:
            await self.driver.delete(_state(endpoint, event_id))

    async def sweep(self, pending: Iterable[str], expire_after: float, dead_letter_age: float) -> int:
        """Remove expired records, orphaned state and old dead letters; the number of entries removed."""
        now, live, removed = time.time(), set(pending), 0
        for event_id in [i for i in live if id_time(i) < now - expire_after]:
            log.warning("event %s expired undelivered (an endpoint no longer configured?): removed", event_id)
            await self._remove(event_id, await self.driver.list(STATE))
            live.discard(event_id)
            removed += 1
        for endpoint in await self.driver.list(STATE):
            for event_id in await self.driver.list(f"{STATE}/{endpoint}"):
                if event_id not in live and id_time(event_id) < now - ORPHAN_AGE:
                    await self.driver.delete(f"{STATE}/{endpoint}/{event_id}")
                    removed += 1
        for endpoint in await self.driver.list(DEAD):
            for event_id in await self.driver.list(f"{DEAD}/{endpoint}"):
                if id_time(event_id) < now - dead_letter_age:
                    await self.driver.delete(f"{DEAD}/{endpoint}/{event_id}")
                    removed += 1
        return removed
