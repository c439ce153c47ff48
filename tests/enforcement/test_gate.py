"""The content-trust gate's rules, over the real notary CLI's published metadata (fixed clock)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from storage.filesystem import FilesystemDriver
from storage.references import Digest
from storage.store import RegistryStore
from trust.collection import StoredTrustData
from trust.gate import ContentTrustGate
from trust.policy import Policy, PolicyHolder
from trust.timeutil import parse_rfc3339

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "notary"  # scripts/gen-notary-vectors.py
EXPECTED = json.loads((VECTORS / "expected.json").read_text())
GUN = EXPECTED["gun"]
REPO = GUN.split("/", 1)[1]  # library/alpine
LATEST = (VECTORS / "content" / "latest.manifest.json").read_bytes()
NOW = parse_rfc3339(EXPECTED["current"]["timestamp"]["expires"]) - timedelta(days=1)
ENFORCED = {"projects": {"library": {"content_trust": {"enforce": True}}}}


class DirectorySource:
    """Trust data read from a directory laid out like tests/vectors/notary/current (etag: timestamp bytes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loads = 0

    async def current_etag(self, repository: str) -> str | None:
        ts = self.root / "timestamp.json"
        return hashlib.sha256(ts.read_bytes()).hexdigest() if ts.exists() else None

    async def load(self, repository: str) -> tuple[str, StoredTrustData] | None:
        self.loads += 1
        if not (self.root / "root.json").exists():
            return None

        def read(name: str) -> bytes | None:
            p = self.root / name
            return p.read_bytes() if p.exists() else None

        return GUN, StoredTrustData(
            root=read("root.json"), timestamp=read("timestamp.json"), snapshot=read("snapshot.json"),
            targets=read("targets.json"), delegations={"targets/releases": read("targets/releases.json") or b""},
        )


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(VECTORS / "current", tmp_path / "trust")
    return tmp_path / "trust"


@pytest.fixture
async def store(tmp_path: Path) -> RegistryStore:
    st = RegistryStore(FilesystemDriver(str(tmp_path / "data")))
    await st.put_blob(REPO, once(b"{}"), Digest.of(b"{}"))
    await st.put_manifest(REPO, LATEST, json.loads(LATEST)["mediaType"], Digest.of(LATEST), ["latest"], None, None)
    return st


def make_gate(store: RegistryStore, trust_dir: Path, config: dict | None = None,
              now: datetime = NOW) -> tuple[ContentTrustGate, DirectorySource]:
    source = DirectorySource(trust_dir)
    return ContentTrustGate(store, source, PolicyHolder(Policy.from_config(config or ENFORCED)), lambda: now), source


async def manifest(store: RegistryStore, ref: str):
    digest = Digest.parse(ref) if ":" in ref else await store.resolve_tag(REPO, ref)
    return await store.get_manifest(REPO, digest)


async def test_signed_tag_served(store, trust_dir) -> None:
    gate, _ = make_gate(store, trust_dir)
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))
    assert verdict.served, verdict


async def test_signed_digest_served(store, trust_dir) -> None:
    gate, _ = make_gate(store, trust_dir)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, None, m)).served


async def test_unsigned_tag_refused(store, trust_dir) -> None:
    await store.put_manifest(REPO, LATEST, "application/vnd.oci.image.manifest.v1+json", Digest.of(LATEST),
                             ["unsigned"], None, None)
    gate, _ = make_gate(store, trust_dir)
    verdict = await gate.decide(REPO, "unsigned", await manifest(store, "unsigned"))
    assert not verdict.served
    assert verdict.message == "The image is not signed in Notary."
    assert verdict.reason.startswith("tag not signed")
    assert verdict.detail == {"repository": REPO, "reference": "unsigned", "digest": str(Digest.of(LATEST)),
                              "reason": verdict.reason}


async def test_tag_moved_to_unsigned_manifest_refused(store, trust_dir) -> None:
    other = LATEST.replace(b'"layers":[]', b'"layers":[],"annotations":{"moved":"yes"}')
    await store.put_manifest(REPO, other, "application/vnd.oci.image.manifest.v1+json", Digest.of(other),
                             ["latest"], None, None)
    gate, _ = make_gate(store, trust_dir)
    m = await manifest(store, "latest")
    verdict = await gate.decide(REPO, "latest", m)
    assert not verdict.served
    assert verdict.reason.startswith("signed for another digest")
    assert verdict.detail["signed_digest"] == str(Digest.of(LATEST))
    assert not (await gate.decide(REPO, None, m)).served  # and its digest is not signed either


async def test_no_trust_data(store, tmp_path) -> None:
    gate, _ = make_gate(store, tmp_path / "empty")
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))
    assert not verdict.served and verdict.reason.startswith("no trust data")


async def test_expired_trust_data(store, trust_dir) -> None:
    gate, _ = make_gate(store, trust_dir, now=NOW + timedelta(days=30))
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))
    assert not verdict.served and verdict.reason.startswith("trust data expired"), verdict.reason


async def test_tampered_stored_targets(store, trust_dir) -> None:
    targets = json.loads((trust_dir / "targets.json").read_bytes())
    targets["signed"]["targets"]["latest"]["length"] += 1
    (trust_dir / "targets.json").write_text(json.dumps(targets))
    gate, _ = make_gate(store, trust_dir)
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))
    assert not verdict.served and verdict.reason.startswith("verification failed"), verdict.reason


async def test_pinned_root_key_mismatch(store, trust_dir) -> None:
    config = {"projects": {"library": {"content_trust": {"enforce": True, "root_keys": ["0" * 64]}}}}
    gate, _ = make_gate(store, trust_dir, config)
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))
    assert not verdict.served and verdict.reason.startswith("verification failed"), verdict.reason


async def test_project_not_enforced(store, trust_dir, tmp_path) -> None:
    gate, _ = make_gate(store, tmp_path / "none", {"projects": {"other": {"content_trust": {"enforce": True}}}})
    assert (await gate.decide(REPO, "latest", await manifest(store, "latest"))).served


async def test_signers_restrict_roles(store, trust_dir) -> None:
    config = {"projects": {"library": {"content_trust": {"enforce": True, "signers": ["targets/releases"]}}}}
    gate, _ = make_gate(store, trust_dir, config)
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))  # signed in `targets` only
    assert not verdict.served and verdict.reason.startswith("tag not signed")


async def test_push_holder_head_not_gated(store, tmp_path) -> None:
    gate, _ = make_gate(store, tmp_path / "none")
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m, push_holder_head=True)).served
    assert not (await gate.decide(REPO, "latest", m)).served


async def test_policy_reload_applies_at_once(store, tmp_path) -> None:
    gate, _ = make_gate(store, tmp_path / "none")
    m = await manifest(store, "latest")
    assert not (await gate.decide(REPO, "latest", m)).served
    gate.policy.reload({"projects": {"library": {"content_trust": {"enforce": False}}}})
    assert (await gate.decide(REPO, "latest", m)).served


async def test_cache_reused_and_invalidated_by_new_timestamp(store, trust_dir) -> None:
    gate, source = make_gate(store, trust_dir)
    m = await manifest(store, "latest")
    for _ in range(5):
        assert (await gate.decide(REPO, "latest", m)).served
    assert source.loads == 1 and gate.cache_hits == 4
    previous = VECTORS / "history" / "timestamp" / f"{EXPECTED['current']['timestamp']['version'] - 1}.json"
    (trust_dir / "timestamp.json").write_bytes(previous.read_bytes())  # any change of the stored timestamp
    verdict = await gate.decide(REPO, "latest", m)
    assert source.loads == 2
    assert not verdict.served  # the older timestamp points at another snapshot: mix-and-match refused


async def test_concurrent_decisions_verify_once(store, trust_dir) -> None:
    import asyncio

    gate, source = make_gate(store, trust_dir)
    m = await manifest(store, "latest")
    verdicts = await asyncio.gather(*(gate.decide(REPO, "latest", m) for _ in range(50)))
    assert all(v.served for v in verdicts)
    assert source.loads == 1


async def test_pinned_root_key_match(store, trust_dir) -> None:
    current_root_key = EXPECTED["root_chain"][-1]["root_keyids"][0]
    config = {"projects": {"library": {"content_trust": {"enforce": True, "root_keys": [current_root_key]}}}}
    gate, _ = make_gate(store, trust_dir, config)
    assert (await gate.decide(REPO, "latest", await manifest(store, "latest"))).served


async def test_recheck_interval_bounds_storage_reads(store, trust_dir) -> None:
    """With a recheck interval, stored trust data is re-read at most that often (another process's
    publish is seen after it), while `invalidate` (a publish through this process) applies at once."""
    source = DirectorySource(trust_dir)
    gate = ContentTrustGate(store, source, PolicyHolder(Policy.from_config(ENFORCED)), lambda: NOW, recheck=3600)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m)).served
    previous = VECTORS / "history" / "timestamp" / f"{EXPECTED['current']['timestamp']['version'] - 1}.json"
    (trust_dir / "timestamp.json").write_bytes(previous.read_bytes())
    assert (await gate.decide(REPO, "latest", m)).served  # within the interval: not re-read
    assert source.loads == 1
    gate.invalidate(REPO)
    assert not (await gate.decide(REPO, "latest", m)).served
    assert source.loads == 2


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def remembering_gate(store, trust_dir, config: dict | None = None) -> tuple[ContentTrustGate, Clock]:
    """A gate that remembers Notary acceptances (recheck interval), with a clock the test moves."""
    clock = Clock(NOW)
    gate = ContentTrustGate(store, DirectorySource(trust_dir), PolicyHolder(Policy.from_config(config or ENFORCED)),
                            clock, recheck=3600)
    return gate, clock


def forbid_source_checks(gate: ContentTrustGate) -> None:
    async def fail(*args, **kwargs):
        raise AssertionError("the Notary source was asked again")

    gate.notary.check = fail  # type: ignore[method-assign]


async def test_repeated_signed_pull_is_served_from_the_remembered_acceptance(store, trust_dir) -> None:
    gate, _ = remembering_gate(store, trust_dir)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m)).served
    assert (await gate.decide(REPO, None, m)).served  # by digest: a separate acceptance
    forbid_source_checks(gate)
    hits = gate.cache_hits
    assert (await gate.decide(REPO, "latest", m)).served
    assert (await gate.decide(REPO, None, m)).served
    assert gate.cache_hits == hits + 2


async def test_remembered_acceptance_ends_with_its_verification(store, trust_dir) -> None:
    gate, _ = remembering_gate(store, trust_dir)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m)).served
    targets = json.loads((trust_dir / "targets.json").read_bytes())
    targets["signed"]["targets"]["latest"]["length"] += 1  # the stored data no longer verifies
    (trust_dir / "targets.json").write_text(json.dumps(targets))
    gate.invalidate(REPO)  # a publish through this process
    verdict = await gate.decide(REPO, "latest", m)
    assert not verdict.served and verdict.reason.startswith("verification failed"), verdict.reason


async def test_remembered_acceptance_ends_when_the_trust_data_expires(store, trust_dir) -> None:
    gate, clock = remembering_gate(store, trust_dir)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m)).served
    clock.now = NOW + timedelta(days=30)
    verdict = await gate.decide(REPO, "latest", m)
    assert not verdict.served and verdict.reason.startswith("trust data expired"), verdict.reason


async def test_remembered_acceptance_ends_with_a_policy_reload(store, trust_dir) -> None:
    gate, _ = remembering_gate(store, trust_dir)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m)).served
    gate.policy.reload({"projects": {"library": {"content_trust": {"enforce": True, "signers": ["targets/releases"]}}}})
    verdict = await gate.decide(REPO, "latest", m)  # `latest` is signed in `targets` only
    assert not verdict.served and verdict.reason.startswith("tag not signed"), verdict.reason


async def test_remembered_acceptance_does_not_follow_a_moved_tag(store, trust_dir) -> None:
    gate, _ = remembering_gate(store, trust_dir)
    assert (await gate.decide(REPO, "latest", await manifest(store, "latest"))).served
    other = LATEST.replace(b'"layers":[]', b'"layers":[],"annotations":{"moved":"yes"}')
    await store.put_manifest(REPO, other, "application/vnd.oci.image.manifest.v1+json", Digest.of(other),
                             ["latest"], None, None)
    verdict = await gate.decide(REPO, "latest", await manifest(store, "latest"))
    assert not verdict.served and verdict.reason.startswith("signed for another digest"), verdict.reason


async def test_remembered_acceptance_lasts_only_the_recheck_interval(store, trust_dir) -> None:
    gate, _ = remembering_gate(store, trust_dir)
    m = await manifest(store, "latest")
    assert (await gate.decide(REPO, "latest", m)).served
    previous = VECTORS / "history" / "timestamp" / f"{EXPECTED['current']['timestamp']['version'] - 1}.json"
    (trust_dir / "timestamp.json").write_bytes(previous.read_bytes())  # another process published
    gate.notary.recheck = 0  # the interval has passed: the next decision confirms against storage
    assert not (await gate.decide(REPO, "latest", m)).served
