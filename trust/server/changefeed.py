"""The changefeed: one durable, ordered log of trust data changes, shared by every process on the storage.

    trust/_changefeed/<ID as 20 digits>     {"gun", "repository", "version", "sha256", "category", "created"}
    trust/<repository>/_changes/<ID>        (empty) index: the IDs of one repository's records

One record per new timestamp (`update`: a publish, or the server re-signing an expiring timestamp) and
per deletion of a collection (`deletion`, version 0). IDs are 1, 2, 3, ... without gaps: a writer
creates the object of the next ID only if it is absent (`put_if_absent`, atomic across processes and
replicas sharing the storage) and moves on to the following ID when another writer took it. Records
are written after the change they describe is committed (a crash in between loses that record, never
announces a change that did not happen). No repository is named `_changefeed`, so none shadows it.
The per-repository index (written right after the record; it outlives the repository's deletion) lets a
GUN's feed read only that repository's records.

Paging follows notary-server 0.7.0 (`GET /v2/_trust/changefeed?change_id=&records=`): records after
`change_id` (0: from the start), at most `records` of them (0 means 100); a negative `records`, or a
negative `change_id` (from the end), pages backwards: the last `records` before `change_id`, in
ascending order.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.base import PathNotFoundError, StorageDriver

log = logging.getLogger(__name__)

DEFAULT_RECORDS = 100
UPDATE, DELETION = "update", "deletion"
Visible = Callable[[str], Awaitable[bool]]  # may the caller see changes of this repository?


def _go_time(ns: int) -> str:
    """Unix nanoseconds as Go's RFC 3339 with nanoseconds (trailing zeros trimmed), UTC."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


@dataclass(frozen=True)
class Change:
    id: int
    gun: str
    repository: str
    version: int
    sha256: str
    category: str
    created: str

    def to_json(self) -> dict[str, Any]:
        """The record as notary-server writes it (IDs are strings)."""
        return {"ID": str(self.id), "CreatedAt": self.created, "GUN": self.gun, "Version": self.version,
                "SHA256": self.sha256, "Category": self.category}


class ChangeFeed:
    """Append and page the change records of one storage driver."""

    def __init__(self, driver: StorageDriver, prefix: str = "trust") -> None:
        self.driver = driver
        self.prefix = prefix.strip("/")
        self.dir = f"{self.prefix}/_changefeed"
        self._last: int | None = None  # the highest ID this process has seen taken

    def _key(self, change_id: int) -> str:
        return f"{self.dir}/{change_id:020d}"

    def _index(self, repository: str) -> str:
        return f"{self.prefix}/{repository}/_changes"

    async def _ids(self, directory: str) -> list[int]:
        return sorted(int(n) for n in await self.driver.list(directory) if n.isdigit())

    async def last_id(self) -> int:
        """The highest recorded ID (0: none)."""
        return max(await self._ids(self.dir), default=0)

    async def record(self, gun: str, repository: str, category: str, version: int = 0, sha256: str = "") -> int:
        """Append one change; returns its ID."""
        doc = {"gun": gun, "repository": repository, "version": version, "sha256": sha256,
               "category": category, "created": _go_time(time.time_ns())}
        data = json.dumps(doc, separators=(",", ":")).encode()
        if self._last is None:
            self._last = await self.last_id()
        while True:
            candidate = self._last + 1
            created = await self.driver.put_if_absent(self._key(candidate), data)
            self._last = max(self._last, candidate)  # taken now, by this writer or another (no gaps)
            if created:
                await self.driver.put(f"{self._index(repository)}/{candidate:020d}", b"")
                return candidate

    async def _read(self, change_id: int) -> Change | None:
        try:
            doc = json.loads(await self.driver.get(self._key(change_id)))
        except PathNotFoundError:
            return None
        return Change(change_id, doc["gun"], doc["repository"], doc["version"], doc["sha256"], doc["category"],
                      doc["created"])

    async def page(self, change_id: int, records: int, *, gun: str | None = None, repository: str | None = None,
                   visible: Visible | None = None) -> list[Change] | None:
        """The records notary-server returns for `change_id` and `records` (see the module docstring),
        only those of `gun` (in `repository`, whose index then names the candidates) if given and of
        repositories `visible` accepts. None where notary-server answers `null` (nothing recorded yet,
        or paging forward past the end)."""
        last = await self.last_id()
        backwards = change_id < 0 or records < 0
        records = abs(records) or DEFAULT_RECORDS
        if not backwards and last <= change_id:
            return None
        if gun is None and last == 0:
            return None
        if backwards:
            end = last if change_id < 0 or change_id > last else change_id - 1
            candidates: Sequence[int] = range(end, 0, -1)
        else:
            candidates = range(change_id + 1, last + 1)
        if repository is not None:
            indexed = await self._ids(self._index(repository))
            candidates = [i for i in (reversed(indexed) if backwards else indexed) if i in candidates]
        found: list[Change] = []
        for candidate in candidates:
            if len(found) >= records:
                break
            change = await self._read(candidate)
            if change is None or (gun is not None and change.gun != gun):
                continue
            if visible is not None and not await visible(change.repository):
                continue
            found.append(change)
        if backwards:
            found.reverse()
        return found
