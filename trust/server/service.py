"""NotaryService: the Notary v1 trust server's logic over a storage driver (notes §2, §4, §5).

No HTTP here: the handlers in `registry.notary_api` translate requests to these calls and
`NotaryError`s to error responses. The caller maps a GUN to a repository name (storage location)
and passes both; keys and metadata of a repository live under `trust/<repository>/`.

- Every publish is validated as a whole (see `trust.server.update`), then the server signs a
  snapshot (if it holds root's snapshot key and none was posted) and always a new timestamp, then
  the VERSION rule is applied and everything is committed atomically.
- Reads of the current timestamp/snapshot re-sign them when they expire (within `refresh_margin`
  for the timestamp), so reads can write.
- Every new timestamp and every deletion is appended to the changefeed (`trust.server.changefeed`).
- Server keys are created only on request of a caller the handler has checked, at most one per role
  and root version (`ServerKeyStore.create_once`).
- Listeners registered with `add_listener` are called with the repository name after every commit
  or deletion (the content-trust gate drops its cache).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from storage.base import StorageDriver
from trust.collection import StoredTrustData
from trust.errors import Malformed
from trust.keys import PublicKey
from trust.metadata import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, Metadata, Root, is_valid_role, parse_metadata
from trust.server.changefeed import DELETION, UPDATE, Change, ChangeFeed, Visible
from trust.server.errors import NotaryError, invalid_update, not_found
from trust.server.generate import make_snapshot, make_timestamp
from trust.server.keystore import SERVER_ROLES, ServerKeyStore
from trust.server.store import ConcurrentUpdate, CurrentState, MetadataStore, StoredFile
from trust.server.update import ValidatedUpdate, parse_parts, validate_update
from trust.timeutil import utcnow

log = logging.getLogger(__name__)

Listener = Callable[[str], None]


def key_json(key: PublicKey) -> dict[str, Any]:
    """A public key as the key endpoints return it (Notary's field order, not canonical)."""
    return {"keytype": key.keytype, "keyval": {"public": key.to_dict()["keyval"]["public"], "private": None}}


class NotaryService:
    """Notary v1 server operations on one storage driver; see the module docstring."""

    def __init__(
        self,
        driver: StorageDriver,
        passphrase: str | bytes,
        *,
        clock: Callable[[], datetime] = utcnow,
        refresh_margin: timedelta = timedelta(hours=1),
        prefix: str = "trust",
    ) -> None:
        self.store = MetadataStore(driver, prefix)
        self.keys = ServerKeyStore(driver, passphrase, prefix)
        self.changefeed = ChangeFeed(driver, prefix)
        self.clock = clock
        self.refresh_margin = refresh_margin
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[Listener] = []

    # --- notifications -------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call `listener(repository)` after every change of a repository's trust data."""
        self._listeners.append(listener)

    def _notify(self, repository: str) -> None:
        for listener in self._listeners:
            try:
                listener(repository)
            except Exception:  # a broken listener must not fail the write that already happened
                log.exception("trust change listener failed for %s", repository)

    def _lock(self, repository: str) -> asyncio.Lock:
        return self._locks.setdefault(repository, asyncio.Lock())

    # --- reads ---------------------------------------------------------------------------------
    async def _state(self, repository: str, gun: str | None) -> CurrentState | None:
        """The committed state; None also when it belongs to another GUN than `gun` (if given)."""
        state = await self.store.current(repository)
        if state is not None and gun is not None and state.gun != gun:
            return None
        return state

    async def current_etag(self, repository: str) -> str | None:
        """A cheap tag that changes whenever the repository's trust data changes (None: no data)."""
        raw = await self.store.current_raw(repository)  # compared as text: no JSON parsing per request
        return raw.decode("utf-8", "replace") if raw is not None else None

    async def current_gun(self, repository: str) -> str | None:
        """The GUN the repository's trust data is published under."""
        state = await self.store.current(repository)
        return state.gun if state else None

    async def get_current(self, repository: str, role: str, *, gun: str | None = None) -> StoredFile:
        """The current version of `role` (timestamp/snapshot re-signed first if expired)."""
        state = await self._state(repository, gun) if is_valid_role(role) else None
        if state is not None and role in (TIMESTAMP, SNAPSHOT):
            state = await self._refresh(repository, state)
        found = await self.store.read_current(repository, role, state) if state else None
        if found is None:
            raise not_found({})
        return found

    async def get_by_checksum(
        self, repository: str, role: str, hexdigest: str, *, gun: str | None = None
    ) -> StoredFile:
        """The stored version of `role` whose SHA-256 is `hexdigest` (only within that role)."""
        found = None
        if is_valid_role(role) and len(hexdigest) == 64 and await self._state(repository, gun):
            found = await self.store.read_by_checksum(repository, role, hexdigest)
        if found is None:
            raise not_found({})
        return found

    async def get_by_version(self, repository: str, role: str, version: int, *, gun: str | None = None) -> StoredFile:
        state = await self._state(repository, gun) if is_valid_role(role) else None
        found = await self.store.read_committed(repository, role, version, state) if state else None
        if found is None:
            raise not_found({})
        return found

    async def load(self, repository: str) -> tuple[str, StoredTrustData] | None:
        """(GUN, current bytes of every role + older roots) for the verifier, or None if no data.

        An expiring timestamp (or expired server-managed snapshot) is re-signed first, so trust data
        nobody publishes to stays valid for the content-trust gate.
        """
        state = await self.store.current(repository)
        if state is None:
            return None
        state = await self._refresh(repository, state)
        files = await self._current_files(repository, state)
        history = []
        for version in range(1, state.version(ROOT)):
            old = await self.store.read(repository, ROOT, version)
            if old is not None:
                history.append(old.data)
        delegations = {r: d for r, d in files.items() if r.startswith(TARGETS + "/")}
        data = StoredTrustData(
            files.get(ROOT), files.get(TIMESTAMP), files.get(SNAPSHOT), files.get(TARGETS), delegations, history
        )
        return state.gun, data

    # --- keys ----------------------------------------------------------------------------------
    async def existing_key(self, repository: str, role: str) -> dict[str, Any] | None:
        """`GET …/<role>.key` without creating: the key root names for the role if the server holds it,
        else the one created for the current root version; None when there is none (creating one is
        `create_key`, for callers allowed to push)."""
        if role not in SERVER_ROLES:
            raise not_found({})
        root = await self._current_root(repository)
        if root is not None:
            for keyid in root.signed.roles[role].keyids:
                if await self.keys.private_key(repository, role, keyid) is not None:
                    return key_json(root.signed.keys[keyid])
        pending = await self.keys.created_for(repository, role, _slot(root))
        return key_json(pending) if pending is not None else None

    async def get_key(self, repository: str, role: str) -> dict[str, Any]:
        """`existing_key`, or `create_key` when there is none: for a caller allowed to create keys."""
        return await self.existing_key(repository, role) or await self.create_key(repository, role)

    async def create_key(self, repository: str, role: str) -> dict[str, Any]:
        """A new key for `role` (`POST …/<role>.key`, or a `GET` finding none): at most one per role and
        root version; asking again before a root is published returns the same key."""
        if role not in SERVER_ROLES:
            raise not_found({})
        root = await self._current_root(repository)
        return key_json(await self.keys.create_once(repository, role, _slot(root)))

    # --- writes --------------------------------------------------------------------------------
    async def publish(self, repository: str, gun: str, parts: Sequence[tuple[str | None, bytes]]) -> None:
        """`POST …/_trust/tuf/`: validate, sign, check versions, commit atomically (or nothing).

        A repository's trust data belongs to one GUN: publishing under another one is INVALID_GUN.
        """
        posted = parse_parts(parts)
        async with self._lock(repository):
            state = await self.store.current(repository)
            if state is not None and state.gun != gun:
                raise NotaryError("INVALID_GUN", f"trust data of this repository is published as {state.gun}")
            stored = await self._current_files(repository, state)
            now = self.clock()
            update = validate_update(gun, stored, posted, now)
            files = {role: (md.version, md.raw) for role, md in update.posted.items()}
            snapshot = posted.get(SNAPSHOT)
            if snapshot is None:
                snapshot = await self._server_snapshot(repository, update, state, now)
                files[SNAPSHOT] = (_version(state, SNAPSHOT) + 1, snapshot)
            timestamp = await self._server_timestamp(repository, update.root, state, snapshot, now)
            files[TIMESTAMP] = (_version(state, TIMESTAMP) + 1, timestamp)
            for role, (version, _data) in files.items():
                if version <= _version(state, role):
                    raise NotaryError("VERSION", {"role": role, "version": version})
            await self._commit(repository, gun, state, files)
            await self._record_update(gun, repository, files[TIMESTAMP])  # in commit order

    async def delete(self, repository: str, *, gun: str | None = None) -> None:
        """`DELETE …/_trust/tuf/`: remove all metadata (idempotent; server keys are kept).

        With `gun`, data published under another GUN is left alone (as if absent)."""
        async with self._lock(repository):
            if await self._state(repository, gun) is None:
                return
            state = await self.store.current(repository)
            existed = await self.store.delete(repository)
            if existed and state is not None:
                await self._record(state.gun, repository, DELETION)
        if existed:
            self._notify(repository)

    # --- changefeed ----------------------------------------------------------------------------
    async def changes(self, change_id: int, records: int, *, gun: str | None = None, repository: str | None = None,
                      visible: Visible | None = None) -> list[Change] | None:
        """A page of the changefeed (`trust.server.changefeed.ChangeFeed.page`)."""
        return await self.changefeed.page(change_id, records, gun=gun, repository=repository, visible=visible)

    async def _record_update(self, gun: str, repository: str, timestamp: tuple[int, bytes]) -> None:
        version, data = timestamp
        await self._record(gun, repository, UPDATE, version, hashlib.sha256(data).hexdigest())

    async def _record(self, gun: str, repository: str, category: str, version: int = 0, sha256: str = "") -> None:
        """Append to the changefeed after the change is committed (a failure here loses the record,
        never the change: it is logged)."""
        try:
            await self.changefeed.record(gun, repository, category, version, sha256)
        except Exception:
            log.exception("could not record the %s of %s in the changefeed", category, gun)

    # --- internals -----------------------------------------------------------------------------
    async def _commit(
        self, repository: str, gun: str, state: CurrentState | None, files: dict[str, tuple[int, bytes]]
    ) -> None:
        try:
            await self.store.commit(repository, gun, state, files)
        except ConcurrentUpdate as exc:
            raise NotaryError("UPDATING", str(exc)) from exc
        self._notify(repository)

    async def _current_files(self, repository: str, state: CurrentState | None) -> dict[str, bytes]:
        files = {}
        for role in state.roles if state else ():
            found = await self.store.read_current(repository, role, state)
            if found is not None:
                files[role] = found.data
        return files

    async def _current_root(self, repository: str) -> Metadata[Root] | None:
        found = await self.store.read_current(repository, ROOT)
        if found is None:
            return None
        try:
            return parse_metadata(found.data, ROOT)
        except Malformed as exc:
            raise NotaryError("UNKNOWN", f"stored root does not parse: {exc}") from exc

    async def _server_snapshot(
        self, repository: str, update: ValidatedUpdate, state: CurrentState | None, now: datetime
    ) -> bytes:
        role = update.root.signed.roles[SNAPSHOT]
        signers = await self.keys.signers(repository, SNAPSHOT, role.keyids)
        if len(signers) < role.threshold:
            raise invalid_update(
                "ErrBadHierarchy",
                "no snapshot was included in update and server does not hold current snapshot key for repository",
                Missing="snapshot",
            )
        if TARGETS not in update.files:
            raise invalid_update(
                "ErrBadHierarchy", "no targets metadata exists or was included in the update", Missing="targets"
            )
        return make_snapshot(_version(state, SNAPSHOT) + 1, update.files, now, signers)

    async def _server_timestamp(
        self, repository: str, root: Metadata[Root], state: CurrentState | None, snapshot: bytes, now: datetime
    ) -> bytes:
        role = root.signed.roles[TIMESTAMP]
        signers = await self.keys.signers(repository, TIMESTAMP, role.keyids)
        if len(signers) < role.threshold:
            raise invalid_update("ErrBadRoot", "no  timestamp keys exist on the server")
        return make_timestamp(_version(state, TIMESTAMP) + 1, snapshot, now, signers)

    async def _refresh(self, repository: str, state: CurrentState) -> CurrentState:
        """Re-sign an expired server-managed snapshot and an expiring timestamp; returns the state."""
        now = self.clock()
        timestamp = await self.store.read_current(repository, TIMESTAMP, state)
        snapshot = await self.store.read_current(repository, SNAPSHOT, state)
        if timestamp is None or snapshot is None:
            return state
        snap_md = _parse_or_none(snapshot.data, SNAPSHOT)
        ts_md = _parse_or_none(timestamp.data, TIMESTAMP)
        snapshot_expired = snap_md is not None and now >= snap_md.signed.expires
        timestamp_due = ts_md is None or now + self.refresh_margin >= ts_md.signed.expires
        if not snapshot_expired and not timestamp_due:
            return state
        async with self._lock(repository):
            latest = await self.store.current(repository)
            if latest is None or latest.generation != state.generation:
                return latest or state  # someone else changed it meanwhile
            root = await self._current_root(repository)
            if root is None:
                return state
            files: dict[str, tuple[int, bytes]] = {}
            new_snapshot = snapshot.data
            if snapshot_expired:
                role = root.signed.roles[SNAPSHOT]
                signers = await self.keys.signers(repository, SNAPSHOT, role.keyids)
                if len(signers) >= role.threshold:
                    stored = await self._current_files(repository, state)
                    covered = {r: d for r, d in stored.items() if r not in (SNAPSHOT, TIMESTAMP)}
                    new_snapshot = make_snapshot(state.version(SNAPSHOT) + 1, covered, now, signers)
                    files[SNAPSHOT] = (state.version(SNAPSHOT) + 1, new_snapshot)
            role = root.signed.roles[TIMESTAMP]
            signers = await self.keys.signers(repository, TIMESTAMP, role.keyids)
            if len(signers) < role.threshold:
                log.warning("cannot re-sign the timestamp of %s: no timestamp key held", repository)
                return state
            files[TIMESTAMP] = (
                state.version(TIMESTAMP) + 1,
                make_timestamp(state.version(TIMESTAMP) + 1, new_snapshot, now, signers),
            )
            try:
                new_state = await self.store.commit(repository, state.gun, state, files)
            except ConcurrentUpdate:
                return await self.store.current(repository) or state
            await self._record_update(state.gun, repository, files[TIMESTAMP])
        self._notify(repository)
        return new_state


def _slot(root: Metadata[Root] | None) -> str:
    """Server keys are created at most once per role for each root version (0: before any root)."""
    return str(root.version if root is not None else 0)


def _version(state: CurrentState | None, role: str) -> int:
    return state.version(role) if state else 0


def _parse_or_none(data: bytes, role: str) -> Metadata[Any] | None:
    try:
        return parse_metadata(data, role)
    except Malformed:
        return None
