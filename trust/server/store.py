"""Where one repository's Notary metadata lives in the storage driver, and atomic commits.

Layout (the `_` components cannot occur in repository names, so no repository shadows another):

    trust/<repository>/_tuf/current.json                 {"generation": <uuid>, "gun": <GUN>, "roles":
                                                          {<role>: {"version": N, "sha256": <hex>}}}
    trust/<repository>/_tuf/roles/<role>/<N>.json        every stored version, bytes as uploaded
    trust/<repository>/_tuf/sha256/<role>/<hex>          "<N>": which version has that checksum
    trust/<repository>/_tuf/claims/<generation>/<n>      who commits the successor of that state

A commit first claims the successor of the state it builds on: it creates `claims/<generation>/0`
(`initial` for a repository without trust data) only if absent, so of several writers building on the
same state, in this process or in other replicas sharing the storage, exactly one goes on and the
others get ConcurrentUpdate. The winner writes the new version files and checksum entries and replaces
`current.json` last, so a crash leaves the old or the new state. Versions above the current one are
uncommitted leftovers of such a crash: readers ignore them and the next commit of that role removes
them. A claim names its writer (host, pid, a per-process token); one whose writer is gone (on this
host: no such process, or an earlier process with this pid) or that is older than CLAIM_STALE_SECONDS
without the pointer having moved is stale, and the next writer claims attempt n+1 (create-only again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from storage.base import PathNotFoundError, StorageDriver

CLAIM_STALE_SECONDS = 120.0  # a commit claimed this long ago whose pointer never moved has crashed
MAX_CLAIM_ATTEMPTS = 1000
_PROCESS = uuid.uuid4().hex  # tells this process from an earlier one that had the same pid


def _host() -> str:
    """This host and PID namespace: where a pid names the same process (containers sharing the
    host's name, e.g. host networking, have PID namespaces of their own)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}"


def _claimant() -> dict[str, object]:
    return {"host": _host(), "pid": os.getpid(), "process": _PROCESS, "at": time.time()}


def _claimant_gone(doc: object) -> bool:
    """Whether the writer named in a claim is a process of this host that no longer runs."""
    if not isinstance(doc, dict) or doc.get("host") != _host() or not isinstance(doc.get("pid"), int):
        return False
    if doc["pid"] == os.getpid():
        return doc.get("process") != _PROCESS
    try:
        os.kill(doc["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


@dataclass(frozen=True)
class RoleHead:
    version: int
    sha256: str


@dataclass(frozen=True)
class CurrentState:
    """The committed state of one repository: the GUN it is published under, and the current version
    and checksum of every role. `generation` changes with every commit."""

    generation: str
    gun: str
    roles: Mapping[str, RoleHead]

    def version(self, role: str) -> int:
        head = self.roles.get(role)
        return head.version if head else 0


@dataclass(frozen=True)
class StoredFile:
    """A metadata file as stored, with the time it was stored (Unix seconds)."""

    data: bytes
    modified: float
    version: int


class MetadataStore:
    """Versioned, atomically committed Notary metadata of repositories in a storage driver."""

    def __init__(self, driver: StorageDriver, prefix: str = "trust") -> None:
        self.driver = driver
        self.prefix = prefix.strip("/")

    # --- keys ----------------------------------------------------------------------------------
    def _base(self, repository: str) -> str:
        return f"{self.prefix}/{repository}/_tuf"

    def _current_key(self, repository: str) -> str:
        return f"{self._base(repository)}/current.json"

    def _role_dir(self, repository: str, role: str) -> str:
        return f"{self._base(repository)}/roles/{role}"

    def _version_key(self, repository: str, role: str, version: int) -> str:
        return f"{self._role_dir(repository, role)}/{version}.json"

    def _checksum_key(self, repository: str, role: str, sha256: str) -> str:
        return f"{self._base(repository)}/sha256/{role}/{sha256}"

    def _claim_key(self, repository: str, base: CurrentState | None, attempt: int) -> str:
        return f"{self._base(repository)}/claims/{base.generation if base else 'initial'}/{attempt}"

    # --- reads ---------------------------------------------------------------------------------
    async def current(self, repository: str) -> CurrentState | None:
        """The committed state, or None when the repository has no trust data."""
        try:
            raw = await self.driver.get(self._current_key(repository))
        except PathNotFoundError:
            return None
        doc = json.loads(raw)
        roles = {role: RoleHead(h["version"], h["sha256"]) for role, h in doc["roles"].items()}
        return CurrentState(doc["generation"], doc["gun"], roles)

    async def current_raw(self, repository: str) -> bytes | None:
        """The committed pointer's bytes (they change with every commit), or None: a cheap change check."""
        try:
            return await self.driver.get(self._current_key(repository))
        except PathNotFoundError:
            return None

    async def read(self, repository: str, role: str, version: int) -> StoredFile | None:
        """A committed version of a role, or None."""
        key = self._version_key(repository, role, version)
        try:
            data = await self.driver.get(key)
            stat = await self.driver.stat(key)
        except PathNotFoundError:
            return None
        return StoredFile(data, stat.modified, version)

    async def read_committed(
        self, repository: str, role: str, version: int, state: CurrentState | None = None
    ) -> StoredFile | None:
        """Version `version` of `role` if it is committed (not above the current version)."""
        state = state or await self.current(repository)
        if state is None or not 1 <= version <= state.version(role):
            return None
        return await self.read(repository, role, version)

    async def read_current(self, repository: str, role: str, state: CurrentState | None = None) -> StoredFile | None:
        state = state or await self.current(repository)
        head = state.roles.get(role) if state else None
        if head is None:
            return None
        return await self.read(repository, role, head.version)

    async def read_by_checksum(self, repository: str, role: str, sha256: str) -> StoredFile | None:
        """The committed version of `role` whose bytes have SHA-256 `sha256` (hex), or None."""
        try:
            version = int(await self.driver.get(self._checksum_key(repository, role, sha256.lower())))
        except (PathNotFoundError, ValueError):
            return None
        found = await self.read_committed(repository, role, version)
        if found is None or hashlib.sha256(found.data).hexdigest() != sha256.lower():
            return None  # a leftover of an interrupted commit
        return found

    # --- writes --------------------------------------------------------------------------------
    async def commit(
        self, repository: str, gun: str, base: CurrentState | None, files: Mapping[str, tuple[int, bytes]]
    ) -> CurrentState:
        """Store `files` (role -> (version, bytes)) of `gun` on top of `base`; all become current at once.

        Raises ConcurrentUpdate if the committed state is no longer `base`, or another writer has
        claimed its successor (see the module docstring).
        """
        claim = await self._claim(repository, base)
        try:
            return await self._write(repository, gun, base, files)
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: otherwise the claim goes stale
                await self._release(repository, base, claim)
            raise

    async def _release(self, repository: str, base: CurrentState | None, claim: str) -> None:
        """Free the claim of a commit that failed, for a retry, unless the pointer did move (then
        the claim marks `base` as superseded and must stay)."""
        now = await self.current(repository)
        if (now.generation if now else None) == (base.generation if base else None):
            await self.driver.delete(claim)

    async def _write(
        self, repository: str, gun: str, base: CurrentState | None, files: Mapping[str, tuple[int, bytes]]
    ) -> CurrentState:
        for role in files:
            await self._drop_uncommitted(repository, role, base.version(role) if base else 0)
        heads = dict(base.roles) if base else {}
        for role, (version, data) in files.items():
            sha256 = hashlib.sha256(data).hexdigest()
            await self.driver.put(self._version_key(repository, role, version), data)
            await self.driver.put(self._checksum_key(repository, role, sha256), str(version).encode())
            heads[role] = RoleHead(version, sha256)
        now = await self.current(repository)
        if (now.generation if now else None) != (base.generation if base else None):
            raise ConcurrentUpdate(repository)
        state = CurrentState(uuid.uuid4().hex, gun, heads)
        doc = {
            "generation": state.generation,
            "gun": gun,
            "roles": {r: vars(h) for r, h in sorted(heads.items())},
        }
        await self.driver.put(self._current_key(repository), json.dumps(doc).encode())
        return state

    async def _claim(self, repository: str, base: CurrentState | None) -> str:
        """Become the one writer of the state that follows `base` (returns the claim's key), or raise
        ConcurrentUpdate."""
        for attempt in range(MAX_CLAIM_ATTEMPTS):
            key = self._claim_key(repository, base, attempt)
            if await self.driver.put_if_absent(key, json.dumps(_claimant()).encode()):
                return key
            try:
                claimed_at = (await self.driver.stat(key)).modified
                claim = json.loads(await self.driver.get(key))
            except PathNotFoundError:  # the repository's trust data was deleted meanwhile
                raise ConcurrentUpdate(repository) from None
            except ValueError:
                claim = None
            if time.time() - claimed_at < CLAIM_STALE_SECONDS and not _claimant_gone(claim):
                raise ConcurrentUpdate(repository)  # another writer is committing (or has committed)
            now = await self.current(repository)
            if (now.generation if now else None) != (base.generation if base else None):
                raise ConcurrentUpdate(repository)  # that writer did commit: `base` is outdated
        raise ConcurrentUpdate(repository)

    async def _drop_uncommitted(self, repository: str, role: str, current: int) -> None:
        """Remove version files of `role` above the committed version (crash leftovers)."""
        for name in await self.driver.list(self._role_dir(repository, role)):
            if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) > current:
                await self.driver.delete(f"{self._role_dir(repository, role)}/{name}")

    async def delete(self, repository: str) -> bool:
        """Delete all metadata of a repository (pointer first); True if there was any."""
        existed = await self.current(repository) is not None
        await self.driver.delete(self._current_key(repository))
        await self.driver.delete(self._base(repository))
        return existed


class ConcurrentUpdate(Exception):
    """Another writer committed to the repository while this update was being prepared."""

    def __init__(self, repository: str) -> None:
        super().__init__(f"trust data of {repository} changed during the update")
