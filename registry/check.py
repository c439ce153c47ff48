"""Integrity check of a registry's storage, on any driver (no HTTP): `trustreg check [--repair]`.

What is verified, in this order (so a repair of one step is seen by the next):
- torn temp files: `.tmp-*` objects (and trees under a `.tmp-*` directory) are leftovers of a write or a
  delete the process did not finish; older than `temp_age` they are provably dead;
- blobs: every `blobs/<alg>/<xx>/<hex>/data` is hashed (streamed) and must match its digest;
- repositories: every layer link and manifest revision points at an existing blob, every revision's
  content parses as a manifest (a JSON object whose `mediaType`, if any, matches the link), every tag
  holds a digest of an existing revision, every referrer entry names an existing revision;
- trust data: the committed metadata of every collection is present, matches the checksums recorded at
  commit, and verifies as a TUF collection of the GUN it was published under; with the trust key
  passphrase given, every server key decrypts with it.

Repair removes only what is provably broken: old torn temp files, blobs whose bytes do not match their
digest, and links, tags and referrer entries pointing at missing content. Everything else is reported
and left alone (trust data in particular is never touched).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from registry.trust_keys import INSECURE_DEV_PASSPHRASE, decrypts, dev_passphrase_message, is_key_file
from storage.base import PathNotFoundError, StorageDriver
from storage.references import ALGORITHMS, Digest, InvalidReferenceError, is_valid_name, is_valid_tag
from storage.store import blob_key, repo_key
from trust.collection import StoredTrustData, verify_trust_data
from trust.errors import Expired, TrustError
from trust.metadata import ROOT, SNAPSHOT, TARGETS, TIMESTAMP, parse_metadata
from trust.server.store import MetadataStore
from trust.timeutil import utcnow

TEMP_PREFIX = ".tmp-"
DEFAULT_TEMP_AGE = 60.0


@dataclass
class Problem:
    """One thing found wrong: `kind` (stable, for scripts), the storage key and a human message."""

    kind: str
    key: str
    message: str
    repairable: bool = False
    repaired: bool = False

    def __str__(self) -> str:
        suffix = " (removed)" if self.repaired else ""
        return f"{self.kind}: {self.message} [{self.key}]{suffix}"


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    blobs: int = 0
    repositories: int = 0
    manifests: int = 0
    tags: int = 0
    collections: int = 0
    keys: int | None = None  # server keys whose decryption was checked (None: no passphrase, not checked)

    @property
    def ok(self) -> bool:
        """True when nothing is left broken (repaired problems count as fixed)."""
        return all(p.repaired for p in self.problems)

    def summary(self) -> str:
        repaired = sum(p.repaired for p in self.problems)
        return (
            f"checked {self.blobs} blobs, {self.repositories} repositories, {self.manifests} manifests, "
            f"{self.tags} tags, {self.collections} trust collections"
            + (f", {self.keys} trust keys" if self.keys is not None else ", trust keys not checked (no passphrase)")
            + f": {len(self.problems)} problems"
            + (f", {repaired} repaired" if repaired else "")
        )


def _is_temp(key: str) -> bool:
    return any(part.startswith(TEMP_PREFIX) for part in key.split("/"))


def _temp_root(key: str) -> str:
    """The key of the outermost `.tmp-*` component (a file, or a directory being deleted)."""
    parts = key.split("/")
    for i, part in enumerate(parts):
        if part.startswith(TEMP_PREFIX):
            return "/".join(parts[: i + 1])
    return key


class Checker:
    """One check run over a driver; see the module docstring."""

    def __init__(
        self,
        driver: StorageDriver,
        *,
        repair: bool = False,
        temp_age: float = DEFAULT_TEMP_AGE,
        clock: Callable[[], datetime] = utcnow,
        trust_prefix: str = "trust",
        passphrase: str | None = None,
        passphrase_env: str = "TRUSTREG_TRUST_PASSPHRASE",
    ) -> None:
        self.driver = driver
        self.repair = repair
        self.temp_age = temp_age
        self.clock = clock
        self.trust = MetadataStore(driver, trust_prefix)
        self.trust_prefix = trust_prefix.strip("/")
        self.report = CheckReport()
        self.passphrase = passphrase
        self.passphrase_env = passphrase_env

    async def run(self) -> CheckReport:
        keys = [k async for k in self.driver.walk("")]
        await self._temps([k for k in keys if _is_temp(k)])
        keys = [k for k in keys if not _is_temp(k)]
        await self._blobs([k for k in keys if k.startswith("blobs/")])
        await self._repositories([k for k in keys if k.startswith("repositories/")])
        await self._trust([k for k in keys if k.startswith(f"{self.trust_prefix}/")])
        if self.passphrase is not None:
            await self._keys([k for k in keys if is_key_file(k)])
        return self.report

    # --- helpers -------------------------------------------------------------------------------
    async def _problem(self, kind: str, key: str, message: str, remove: str | None = None) -> None:
        """Record a problem; with repair on and `remove` given, delete that key (or prefix)."""
        problem = Problem(kind, key, message, repairable=remove is not None)
        if self.repair and remove is not None:
            await self.driver.delete(remove)
            problem.repaired = True
        self.report.problems.append(problem)

    async def _exists(self, key: str) -> bool:
        try:
            await self.driver.stat(key)
            return True
        except PathNotFoundError:
            return False

    async def _get(self, key: str) -> bytes | None:
        try:
            return await self.driver.get(key)
        except PathNotFoundError:
            return None

    # --- temp files ----------------------------------------------------------------------------
    async def _temps(self, keys: list[str]) -> None:
        now = time.time()
        newest: dict[str, float] = {}
        for key in keys:
            try:
                modified = (await self.driver.stat(key)).modified
            except PathNotFoundError:
                continue
            root = _temp_root(key)
            newest[root] = max(newest.get(root, 0.0), modified)
        for root, modified in sorted(newest.items()):
            if now - modified >= self.temp_age:
                await self._problem("torn-temp", root, "leftover of an interrupted write or delete", remove=root)

    # --- blobs ---------------------------------------------------------------------------------
    async def _blobs(self, keys: list[str]) -> None:
        for key in keys:
            parts = key.split("/")
            if len(parts) != 5 or parts[4] not in ("data", "ref"):
                await self._problem("unexpected-key", key, "not part of the blob layout")
                continue
            if parts[4] == "ref":
                continue
            try:
                digest = Digest.parse(f"{parts[1]}:{parts[3]}")
            except InvalidReferenceError:
                await self._problem("unexpected-key", key, "blob directory is not a digest")
                continue
            if parts[2] != digest.hex[:2]:
                await self._problem("unexpected-key", key, f"blob {digest} stored under the wrong prefix")
                continue
            self.report.blobs += 1
            hasher = digest.hasher()
            try:
                async for chunk in self.driver.read_stream(key):
                    hasher.update(chunk)
            except PathNotFoundError:  # removed meanwhile (gc)
                continue
            if hasher.hexdigest() != digest.hex:
                await self._problem(
                    "corrupt-blob", key,
                    f"blob {digest} has content {digest.algorithm}:{hasher.hexdigest()}",
                    remove=key.rsplit("/", 1)[0],
                )

    async def _blob_present(self, digest: Digest) -> bool:
        return await self._exists(blob_key(digest))

    # --- repositories --------------------------------------------------------------------------
    async def _repositories(self, keys: list[str]) -> None:
        by_repo: dict[str, list[list[str]]] = {}
        for key in keys:
            parts = key.split("/")[1:]
            split = next((i for i, p in enumerate(parts) if p.startswith("_")), None)
            if split is None or split == 0 or not is_valid_name("/".join(parts[:split])):
                await self._problem("unexpected-key", key, "not part of the repository layout")
                continue
            by_repo.setdefault("/".join(parts[:split]), []).append(parts[split:])
        for name, rels in sorted(by_repo.items()):
            self.report.repositories += 1
            await self._repository(name, rels)

    async def _repository(self, name: str, rels: list[list[str]]) -> None:
        base = repo_key(name)
        revisions: set[Digest] = set()
        # Layer links and revisions first (tags and referrers are checked against the revisions).
        for rel in rels:
            if rel[0] == "_layers":
                await self._link(base, rel)
        for rel in rels:
            if rel[:2] == ["_manifests", "revisions"]:
                digest = await self._revision(name, base, rel)
                if digest is not None:
                    revisions.add(digest)
        for rel in rels:
            if rel[:2] == ["_manifests", "tags"]:
                await self._tag(name, base, rel, revisions)
            elif rel[0] == "_referrers":
                await self._referrer(name, base, rel, revisions)

    def _digest_of(self, rel: list[str], at: int) -> Digest | None:
        if len(rel) != at + 2 or rel[at] not in ALGORITHMS:
            return None
        try:
            return Digest.parse(f"{rel[at]}:{rel[at + 1]}")
        except InvalidReferenceError:
            return None

    async def _link(self, base: str, rel: list[str]) -> None:
        key = f"{base}/{'/'.join(rel)}"
        digest = self._digest_of(rel, 1)
        if digest is None:
            await self._problem("unexpected-key", key, "layer link name is not a digest")
        elif not await self._blob_present(digest):
            await self._problem("dangling-link", key, f"layer link to missing blob {digest}", remove=key)

    async def _revision(self, name: str, base: str, rel: list[str]) -> Digest | None:
        """Check one revision; the digest if it is (still) a valid revision."""
        key = f"{base}/{'/'.join(rel)}"
        digest = self._digest_of(rel, 2)
        if digest is None:
            await self._problem("unexpected-key", key, "manifest revision name is not a digest")
            return None
        self.report.manifests += 1
        body = await self._get(blob_key(digest))
        if body is None:
            await self._problem("dangling-revision", key, f"manifest {name}@{digest} has no content", remove=key)
            return None
        try:
            media_type = json.loads(await self._get(key) or b"")["mediaType"]
        except (ValueError, KeyError, TypeError):
            media_type = None
        if not isinstance(media_type, str):
            await self._problem("bad-revision", key, f"revision link of {name}@{digest} is not readable")
            return digest
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            await self._problem("bad-manifest", blob_key(digest), f"manifest {name}@{digest} is not a JSON object")
        elif doc.get("mediaType") is not None and doc.get("mediaType") != media_type:
            await self._problem(
                "bad-manifest", blob_key(digest),
                f"manifest {name}@{digest} declares {doc.get('mediaType')!r}, linked as {media_type!r}",
            )
        return digest

    async def _tag(self, name: str, base: str, rel: list[str], revisions: set[Digest]) -> None:
        key = f"{base}/{'/'.join(rel)}"
        if len(rel) != 3 or not is_valid_tag(rel[2]):
            await self._problem("unexpected-key", key, "tag file name is not a tag")
            return
        self.report.tags += 1
        raw = await self._get(key)
        if raw is None:
            return
        try:
            digest = Digest.parse(raw.decode())
        except (InvalidReferenceError, UnicodeDecodeError):
            await self._problem("dangling-tag", key, f"tag {name}:{rel[2]} does not hold a digest", remove=key)
            return
        if digest not in revisions:
            await self._problem("dangling-tag", key, f"tag {name}:{rel[2]} points at missing manifest {digest}",
                                remove=key)

    async def _referrer(self, name: str, base: str, rel: list[str], revisions: set[Digest]) -> None:
        key = f"{base}/{'/'.join(rel)}"
        alg, _, hex_ = rel[-1].partition("-") if len(rel) == 4 else ("", "", "")
        try:
            digest = Digest.parse(f"{alg}:{hex_}")
        except InvalidReferenceError:
            await self._problem("unexpected-key", key, "referrer entry name is not a digest")
            return
        if digest not in revisions:
            await self._problem("dangling-referrer", key, f"referrer {name}@{digest} is not a stored manifest",
                                remove=key)
            return
        try:
            descriptor = json.loads(await self._get(key) or b"")
            ok = isinstance(descriptor, dict) and descriptor.get("digest") == str(digest)
        except ValueError:
            ok = False
        if not ok:
            await self._problem("bad-referrer", key, f"referrer entry of {name}@{digest} is not its descriptor")

    # --- trust data ----------------------------------------------------------------------------
    async def _trust(self, keys: list[str]) -> None:
        suffix = "/_tuf/current.json"
        prefix_len = len(self.trust_prefix) + 1
        repositories = sorted(k[prefix_len : -len(suffix)] for k in keys if k.endswith(suffix))
        for repository in repositories:
            self.report.collections += 1
            await self._collection(repository)

    async def _collection(self, repository: str) -> None:
        where = f"{self.trust_prefix}/{repository}/_tuf"
        try:
            state = await self.trust.current(repository)
        except (ValueError, KeyError, TypeError) as e:
            await self._problem("bad-trust", f"{where}/current.json", f"trust pointer of {repository} unreadable: {e}")
            return
        if state is None:
            return
        files: dict[str, bytes] = {}
        for role, head in state.roles.items():
            found = await self.trust.read(repository, role, head.version)
            if found is None:
                await self._problem("bad-trust", where, f"{repository}: {role} version {head.version} is missing")
                return
            if hashlib.sha256(found.data).hexdigest() != head.sha256:
                await self._problem("bad-trust", where,
                                    f"{repository}: {role} version {head.version} does not match its checksum")
                return
            files[role] = found.data
        history = []
        for version in range(1, state.version(ROOT)):
            old = await self.trust.read(repository, ROOT, version)
            if old is not None:
                history.append(old.data)
        data = StoredTrustData(
            files.get(ROOT), files.get(TIMESTAMP), files.get(SNAPSHOT), files.get(TARGETS),
            {r: d for r, d in files.items() if r.startswith(TARGETS + "/")}, history,
        )
        now = self.clock()
        try:
            try:
                verify_trust_data(data, state.gun, now)
            except Expired as e:
                # The server re-signs an expired timestamp (and its own snapshot) on the next read: verify
                # everything else as of just before the server-managed roles expired.
                if e.role not in (TIMESTAMP, SNAPSHOT):
                    raise
                verify_trust_data(data, state.gun, self._before_expiry(data, now))
        except TrustError as e:
            await self._problem("bad-trust", where, f"trust data of {state.gun} does not verify: {e}")

    async def _keys(self, keys: list[str]) -> None:
        """Every server key must decrypt with the passphrase the server is started with."""
        self.report.keys = len(keys)
        for key in keys:
            pem = await self._get(key) or b""
            if decrypts(pem, self.passphrase or ""):
                continue
            if self.passphrase != INSECURE_DEV_PASSPHRASE and decrypts(pem, INSECURE_DEV_PASSPHRASE):
                await self._problem("dev-passphrase-key", key, dev_passphrase_message(self.passphrase_env))
            else:
                await self._problem("undecryptable-key", key,
                                    f"the passphrase in {self.passphrase_env} does not decrypt this trust key")

    @staticmethod
    def _before_expiry(data: StoredTrustData, now: datetime) -> datetime:
        moments = [now]
        for raw, role in ((data.timestamp, TIMESTAMP), (data.snapshot, SNAPSHOT)):
            if raw is not None:
                moments.append(parse_metadata(raw, role).signed.expires - timedelta(seconds=1))
        return min(moments)


async def check_storage(driver: StorageDriver, *, repair: bool = False, **options: object) -> CheckReport:
    """Run one check (options as for Checker) and return its report."""
    return await Checker(driver, repair=repair, **options).run()  # type: ignore[arg-type]
