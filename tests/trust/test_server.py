"""NotaryService over a FilesystemDriver: publishes replayed from the real history, and refusals."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.filesystem import FilesystemDriver
from tests.trust.factory import EXPECTED, GUN, NOW, Signer, SyntheticRepo, history, throwaway_key
from trust.collection import StoredTrustData, verify_trust_data
from trust.keys import PublicKey
from trust.metadata import parse_metadata
from trust.server import NotaryError, NotaryService
from trust.signing import sign_signed

REPO = "library/alpine"
PASSPHRASE = "test-passphrase"


class Clock:
    """A settable clock for the service."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> NotaryService:
    return NotaryService(FilesystemDriver(str(tmp_path)), PASSPHRASE, clock=clock)


def public(key: dict[str, Any]) -> PublicKey:
    return PublicKey.from_dict(key)


async def server_root(service: NotaryService, version: int, signed_by: list[str] | None = None) -> bytes:
    """History root `version` with the server's timestamp/snapshot keys, re-signed with the real root keys.

    The vectors' timestamp/snapshot keys are notary-server's (private parts unknown), so the roles are
    pointed at keys this server holds; root keys, targets key, certificates and signers stay real.
    """
    signed = json.loads(history("root", version))["signed"]
    for role in ("timestamp", "snapshot"):
        key = public(await service.get_key(REPO, role))
        signed["keys"][key.keyid] = key.to_dict()
        signed["roles"][role] = {"keyids": [key.keyid], "threshold": 1}
    chain = next(r for r in EXPECTED["root_chain"] if r["version"] == version)
    signers = signed_by if signed_by is not None else chain["signed_by"]
    pairs = [(cert_id, throwaway_key(EXPECTED["x509_keys"][cert_id]["public_key_id"])) for cert_id in signers]
    return sign_signed(signed, pairs)


async def replay(service: NotaryService, upto: int = 6) -> None:
    """The CLI session of the vectors (steps 1-6) with a server-managed snapshot from the start."""
    steps: list[list[tuple[str, bytes]]] = [
        [("root", await server_root(service, 1)), ("targets", history("targets", 2))],
        [("root", await server_root(service, 2))],
        [("targets", history("targets", 3))],
        [("targets/releases", history("targets/releases", 1))],
        [("root", await server_root(service, 3))],
        [("targets", history("targets", 4))],
        [("root", await server_root(service, 4))],
    ]
    for parts in steps[: upto + 1]:
        await service.publish(REPO, GUN, parts)


async def trust_data(service: NotaryService) -> StoredTrustData:
    loaded = await service.load(REPO)
    assert loaded is not None and loaded[0] == GUN
    return loaded[1]


async def expect_error(awaitable: Any, code: str, name: str | None = None, msg: str = "") -> NotaryError:
    with pytest.raises(NotaryError) as info:
        await awaitable
    err = info.value
    assert err.code == code, err
    if name is not None:
        assert err.detail["Name"] == name, err.detail
        assert msg in err.detail["Error"]["Msg"], err.detail
    return err


# --- the happy path -----------------------------------------------------------------------------


async def test_replayed_history_verifies(service: NotaryService) -> None:
    changes: list[str] = []
    service.add_listener(changes.append)
    await replay(service)
    data = await trust_data(service)
    result = verify_trust_data(data, GUN, NOW)
    for role, names in EXPECTED["targets"].items():
        for name, facts in names.items():
            assert result.lookup(name) == (facts["sha256"], facts["length"], role)
    assert result.versions["root"] == 4 and result.versions["targets"] == 4
    assert result.versions["timestamp"] == 7 and result.versions["snapshot"] == 7
    assert changes == [REPO] * 7


async def test_bytes_are_stored_and_served_verbatim(service: NotaryService) -> None:
    await replay(service)
    for version in EXPECTED["history"]["targets"]:
        assert (await service.get_by_version(REPO, "targets", version)).data == history("targets", version)
    current = await service.get_current(REPO, "targets/releases")
    assert current.data == history("targets/releases", 1) and current.modified > 0
    sha = EXPECTED["current"]["targets/releases"]["sha256"]
    assert (await service.get_by_checksum(REPO, "targets/releases", sha)).data == current.data


async def test_server_metadata_is_consistent(service: NotaryService) -> None:
    await replay(service, upto=0)
    root = parse_metadata((await service.get_current(REPO, "root")).data, "root")
    timestamp = parse_metadata((await service.get_current(REPO, "timestamp")).data, "timestamp")
    snapshot = await service.get_current(REPO, "snapshot")
    timestamp.signed.snapshot.check(snapshot.data, "timestamp", "snapshot")
    assert timestamp.signed.expires == NOW + timedelta(days=14)
    assert [s.method for s in timestamp.signatures] == ["ecdsa"]
    assert [s.keyid for s in timestamp.signatures] == list(root.signed.roles["timestamp"].keyids)
    snap = parse_metadata(snapshot.data, "snapshot")
    assert set(snap.signed.meta) == {"root", "targets"}
    assert snap.version == 1 and timestamp.version == 1


async def test_checksum_lookup_is_per_role(service: NotaryService) -> None:
    await replay(service, upto=0)
    root = await service.get_current(REPO, "root")
    sha = hashlib.sha256(root.data).hexdigest()
    assert (await service.get_by_checksum(REPO, "root", sha)).data == root.data
    await expect_error(service.get_by_checksum(REPO, "targets", sha), "METADATA_NOT_FOUND")
    await expect_error(service.get_by_checksum(REPO, "root", "0" * 64), "METADATA_NOT_FOUND")


async def test_versions_and_missing(service: NotaryService) -> None:
    await expect_error(service.get_current(REPO, "root"), "METADATA_NOT_FOUND")
    await replay(service, upto=1)
    assert parse_metadata((await service.get_by_version(REPO, "root", 1)).data, "root").version == 1
    for version in (0, 3):
        await expect_error(service.get_by_version(REPO, "root", version), "METADATA_NOT_FOUND")
    await expect_error(service.get_current(REPO, "targets/nothing"), "METADATA_NOT_FOUND")
    await expect_error(service.get_current(REPO, "bogus"), "METADATA_NOT_FOUND")


async def test_docker_flow_with_server_snapshot(service: NotaryService) -> None:
    repo = SyntheticRepo(GUN, NOW)
    repo.timestamp = Signer(None, public(await service.get_key(REPO, "timestamp")))  # type: ignore[arg-type]
    repo.snapshot = Signer(None, public(await service.get_key(REPO, "snapshot")))  # type: ignore[arg-type]
    root = repo.sign_root(repo.root_signed())
    targets = sign_signed(repo.targets_signed({"v1": b"manifest"}), [repo.targets.pair])
    await service.publish(REPO, GUN, [("root", root), ("targets", targets)])
    result = verify_trust_data(await trust_data(service), GUN, NOW)
    assert result.lookup("v1").role == "targets"


async def test_client_signed_snapshot_is_accepted(service: NotaryService) -> None:
    repo = SyntheticRepo(GUN, NOW)
    repo.timestamp = Signer(None, public(await service.get_key(REPO, "timestamp")))  # type: ignore[arg-type]
    data = repo.collection(sign_signed(repo.targets_signed({"v1": b"x"}), [repo.targets.pair]))
    parts = [("root.json", data.root), ("targets", data.targets), ("snapshot", data.snapshot)]
    await service.publish(REPO, GUN, [*parts, ("timestamp", data.targets)])  # a timestamp part is ignored
    assert (await service.get_current(REPO, "snapshot")).data == data.snapshot
    assert (await service.get_current(REPO, "timestamp")).data != data.targets
    verify_trust_data(await trust_data(service), GUN, NOW)


# --- keys ---------------------------------------------------------------------------------------


async def test_key_endpoints(service: NotaryService, tmp_path: Path) -> None:
    assert await service.existing_key(REPO, "timestamp") is None  # reading never creates
    first = await service.get_key(REPO, "timestamp")
    assert list(first) == ["keytype", "keyval"] and list(first["keyval"]) == ["public", "private"]
    assert first["keytype"] == "ecdsa" and first["keyval"]["private"] is None
    # bounded (notary-server makes a new key per call before a root exists): one per role and root version
    assert await service.get_key(REPO, "timestamp") == first == await service.create_key(REPO, "timestamp")
    assert await service.existing_key(REPO, "timestamp") == first
    await replay(service, upto=0)
    named = await service.existing_key(REPO, "timestamp")
    assert named == first and await service.get_key(REPO, "timestamp") == named  # the key root names
    rotated = await service.create_key(REPO, "snapshot")
    assert rotated != await service.existing_key(REPO, "snapshot")
    assert await service.create_key(REPO, "snapshot") == rotated  # until a root is published
    await expect_error(service.get_key(REPO, "targets"), "METADATA_NOT_FOUND")
    pems = list((tmp_path / "trust" / REPO / "_keys").rglob("*.pem"))
    assert len(pems) == 3 and all(p.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") for p in pems)


async def test_keys_need_the_passphrase(service: NotaryService, tmp_path: Path) -> None:
    await replay(service, upto=0)
    other = NotaryService(FilesystemDriver(str(tmp_path)), "wrong passphrase", clock=lambda: NOW)
    with pytest.raises(ValueError):
        await other.get_key(REPO, "timestamp")


async def test_snapshot_key_rotation_to_a_new_server_key(service: NotaryService) -> None:
    await replay(service, upto=0)
    new_key = public(await service.create_key(REPO, "snapshot"))
    signed = json.loads((await service.get_current(REPO, "root")).data)["signed"]
    signed["keys"][new_key.keyid] = new_key.to_dict()
    signed["roles"]["snapshot"] = {"keyids": [new_key.keyid], "threshold": 1}
    signed["version"] = 2
    cert_id = EXPECTED["root_chain"][0]["root_keyids"][0]
    root = sign_signed(signed, [(cert_id, throwaway_key(EXPECTED["x509_keys"][cert_id]["public_key_id"]))])
    await service.publish(REPO, GUN, [("root", root)])
    snapshot = parse_metadata((await service.get_current(REPO, "snapshot")).data, "snapshot")
    assert [s.keyid for s in snapshot.signatures] == [new_key.keyid]
    verify_trust_data(await trust_data(service), GUN, NOW)


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([(None, b"{}")], "NO_FILENAME"),
        ([("foo", b"{}")], "INVALID_ROLE"),
        ([("targets/Bad", b"{}")], "INVALID_ROLE"),
        ([("targets/../x", b"{}")], "INVALID_ROLE"),
        ([("targets", b"not json")], "MALFORMED_JSON"),
        ([("targets", b'{"signed":{}}')], "MALFORMED_JSON"),
    ],
)
async def test_malformed_parts(service: NotaryService, parts: list[tuple[str | None, bytes]], code: str) -> None:
    err = await expect_error(service.publish(REPO, GUN, parts), code)
    if code == "INVALID_ROLE":
        assert err.detail == parts[0][0]


async def test_no_root_at_all(service: NotaryService) -> None:
    await expect_error(
        service.publish(REPO, GUN, [("targets", history("targets", 2))]),
        "INVALID_UPDATE",
        "ErrValidation",
        "no pre-existing root and no root provided in update.",
    )


async def test_root_cn_must_be_the_gun(service: NotaryService) -> None:
    root = await server_root(service, 1)
    await expect_error(
        service.publish(REPO, "127.0.0.1:5000/library/other", [("root", root), ("targets", history("targets", 2))]),
        "INVALID_UPDATE",
        "ErrBadRoot",
        "not the GUN",
    )


async def test_root_without_old_threshold_is_refused(service: NotaryService) -> None:
    await replay(service, upto=3)
    new_cert = EXPECTED["root_chain"][2]["root_keyids"][0]
    root3 = await server_root(service, 3, signed_by=[new_cert])
    await expect_error(
        service.publish(REPO, GUN, [("root", root3)]), "INVALID_UPDATE", "ErrBadRoot", "could not rotate trust"
    )


async def test_root_version_must_increment_by_one(service: NotaryService) -> None:
    await replay(service, upto=0)
    signed = json.loads(await server_root(service, 1))["signed"]
    signed["version"] = 3
    cert_id = EXPECTED["root_chain"][0]["root_keyids"][0]
    root = sign_signed(signed, [(cert_id, throwaway_key(EXPECTED["x509_keys"][cert_id]["public_key_id"]))])
    await expect_error(service.publish(REPO, GUN, [("root", root)]), "INVALID_UPDATE", "ErrBadRoot", "Current 1, new 3")


async def test_expired_root_is_refused(service: NotaryService, clock: Clock) -> None:
    root = await server_root(service, 1)
    clock.now = parse_metadata(root, "root").signed.expires
    await expect_error(
        service.publish(REPO, GUN, [("root", root), ("targets", history("targets", 2))]), "INVALID_UPDATE", "ErrBadRoot"
    )


async def test_targets_signed_by_wrong_key(service: NotaryService) -> None:
    await replay(service, upto=0)
    signed = json.loads(history("targets", 3))["signed"]
    forged = sign_signed(signed, [(EXPECTED["root_roles"]["targets"]["keyids"][0], Signer.ecdsa().key)])
    await expect_error(
        service.publish(REPO, GUN, [("targets", forged)]),
        "INVALID_UPDATE",
        "ErrBadTargets",
        "valid signatures did not meet threshold for targets",
    )


async def test_undelegated_role_is_refused(service: NotaryService) -> None:
    await replay(service, upto=1)  # targets v2 does not delegate targets/releases yet
    await expect_error(
        service.publish(REPO, GUN, [("targets/releases", history("targets/releases", 1))]),
        "INVALID_UPDATE",
        "ErrBadTargets",
        "tuf: invalid role targets/releases. delegation does not exist",
    )


async def test_delegation_signed_by_wrong_key(service: NotaryService) -> None:
    await replay(service, upto=2)
    signed = json.loads(history("targets/releases", 1))["signed"]
    targets_bare = EXPECTED["root_roles"]["targets"]["keyids"][0]
    forged = sign_signed(signed, [(targets_bare, throwaway_key(targets_bare))])
    await expect_error(
        service.publish(REPO, GUN, [("targets/releases", forged)]),
        "INVALID_UPDATE",
        "ErrBadTargets",
        "threshold for targets/releases",
    )


async def test_delegation_and_parent_in_one_update(service: NotaryService) -> None:
    await replay(service, upto=1)
    parts = [("targets/releases", history("targets/releases", 1)), ("targets", history("targets", 3))]
    await service.publish(REPO, GUN, parts)  # parents are validated first, whatever the part order
    assert (await service.get_current(REPO, "targets/releases")).data == parts[0][1]


async def test_snapshot_not_matching_is_refused(tmp_path: Path) -> None:
    service = NotaryService(FilesystemDriver(str(tmp_path)), PASSPHRASE, clock=lambda: NOW)
    repo = SyntheticRepo(GUN, NOW)
    repo.timestamp = Signer(None, public(await service.get_key(REPO, "timestamp")))  # type: ignore[arg-type]
    targets = sign_signed(repo.targets_signed({"v1": b"x"}), [repo.targets.pair])
    other = sign_signed(repo.targets_signed({"v1": b"y"}), [repo.targets.pair])
    data = repo.collection(targets)
    stale = repo.collection(other, root=data.root)
    await expect_error(
        service.publish(REPO, GUN, [("root", data.root), ("targets", targets), ("snapshot", stale.snapshot)]),
        "INVALID_UPDATE",
        "ErrBadSnapshot",
        "hash for targets does not match",
    )


async def test_no_snapshot_and_no_server_snapshot_key(tmp_path: Path) -> None:
    service = NotaryService(FilesystemDriver(str(tmp_path)), PASSPHRASE, clock=lambda: NOW)
    repo = SyntheticRepo(GUN, NOW)
    repo.timestamp = Signer(None, public(await service.get_key(REPO, "timestamp")))  # type: ignore[arg-type]
    data = repo.collection(sign_signed(repo.targets_signed({"v1": b"x"}), [repo.targets.pair]))
    err = await expect_error(
        service.publish(REPO, GUN, [("root", data.root), ("targets", data.targets)]),
        "INVALID_UPDATE",
        "ErrBadHierarchy",
        "server does not hold current snapshot key",
    )
    assert err.detail["Error"]["Missing"] == "snapshot"


async def test_timestamp_key_not_held(tmp_path: Path) -> None:
    service = NotaryService(FilesystemDriver(str(tmp_path)), PASSPHRASE, clock=lambda: NOW)
    repo = SyntheticRepo(GUN, NOW)
    data = repo.collection(sign_signed(repo.targets_signed({"v1": b"x"}), [repo.targets.pair]))
    parts = [("root", data.root), ("targets", data.targets), ("snapshot", data.snapshot)]
    await expect_error(
        service.publish(REPO, GUN, parts), "INVALID_UPDATE", "ErrBadRoot", "no  timestamp keys exist on the server"
    )


async def test_version_rule(service: NotaryService) -> None:
    await replay(service, upto=2)
    await expect_error(service.publish(REPO, GUN, [("targets", history("targets", 3))]), "VERSION")
    await expect_error(service.publish(REPO, GUN, [("targets", history("targets", 2))]), "VERSION")


async def test_refused_update_stores_nothing(service: NotaryService, tmp_path: Path) -> None:
    await replay(service, upto=1)
    tag = await service.current_etag(REPO)
    files = sorted(p for p in (tmp_path / "trust").rglob("*") if "_tuf" in p.parts)
    parts = [
        ("targets", history("targets", 3)),
        ("targets/releases", b'{"signed":{"_type":"Targets"},"signatures":[]}'),
    ]
    await expect_error(service.publish(REPO, GUN, parts), "INVALID_UPDATE", "ErrBadTargets")
    assert await service.current_etag(REPO) == tag
    assert sorted(p for p in (tmp_path / "trust").rglob("*") if "_tuf" in p.parts) == files


async def test_interrupted_commit_leaves_old_state(service: NotaryService, monkeypatch: pytest.MonkeyPatch) -> None:
    await replay(service, upto=1)
    before = await trust_data(service)
    driver = service.store.driver
    real_put = driver.put

    async def crash_on_pointer(key: str, data: bytes) -> None:
        if key.endswith("/current.json"):
            raise OSError("simulated crash")
        await real_put(key, data)

    monkeypatch.setattr(driver, "put", crash_on_pointer)
    with pytest.raises(OSError):
        await service.publish(REPO, GUN, [("targets", history("targets", 3))])
    monkeypatch.setattr(driver, "put", real_put)
    assert await trust_data(service) == before
    await expect_error(service.get_by_version(REPO, "targets", 3), "METADATA_NOT_FOUND")
    await service.publish(REPO, GUN, [("targets", history("targets", 3))])  # the retry succeeds
    assert (await service.get_current(REPO, "targets")).data == history("targets", 3)


# --- timestamp refresh, delete ------------------------------------------------------------------


async def test_expired_timestamp_is_resigned_on_read(service: NotaryService, clock: Clock) -> None:
    changes: list[str] = []
    await replay(service, upto=0)
    service.add_listener(changes.append)
    tag = await service.current_etag(REPO)
    clock.now = NOW + timedelta(days=15)
    timestamp = parse_metadata((await service.get_current(REPO, "timestamp")).data, "timestamp")
    assert timestamp.version == 2 and timestamp.signed.expires == clock.now + timedelta(days=14)
    assert await service.current_etag(REPO) != tag and changes == [REPO]
    verify_trust_data(await trust_data(service), GUN, clock.now)


async def test_expired_server_snapshot_is_resigned(service: NotaryService, clock: Clock) -> None:
    await replay(service, upto=0)
    clock.now = NOW + timedelta(days=3 * 365 + 1)
    data = await trust_data(service)
    assert parse_metadata(data.snapshot, "snapshot").version == 2  # type: ignore[arg-type]
    # targets v2 of the vectors has expired by then, so only the snapshot/timestamp chain is checked
    assert parse_metadata(data.timestamp, "timestamp").signed.expires > clock.now  # type: ignore[arg-type]


async def test_delete(service: NotaryService) -> None:
    changes: list[str] = []
    await service.delete(REPO)  # nothing there: fine
    await replay(service, upto=0)
    service.add_listener(changes.append)
    await service.delete(REPO)
    assert changes == [REPO]
    assert await service.current_etag(REPO) is None
    await expect_error(service.get_current(REPO, "root"), "METADATA_NOT_FOUND")
    await expect_error(service.get_by_version(REPO, "root", 1), "METADATA_NOT_FOUND")
    assert await service.load(REPO) is None
    await replay(service, upto=0)  # a new collection can start over at version 1
    assert parse_metadata((await service.get_current(REPO, "root")).data, "root").version == 1


async def test_error_body_shape() -> None:
    err = NotaryError("METADATA_NOT_FOUND", {})
    assert err.status == 404
    assert err.body() == {
        "errors": [
            {"code": "METADATA_NOT_FOUND", "message": "You have requested metadata that does not exist.", "detail": {}}
        ]
    }
    assert "detail" not in NotaryError("VERSION").body()["errors"][0]


async def test_trust_data_belongs_to_one_gun(service: NotaryService) -> None:
    await replay(service, upto=0)
    other = "localhost:5000/library/alpine"
    assert await service.current_gun(REPO) == GUN
    await expect_error(service.publish(REPO, other, [("targets", history("targets", 3))]), "INVALID_GUN")
    await expect_error(service.get_current(REPO, "root", gun=other), "METADATA_NOT_FOUND")
    await expect_error(service.get_by_version(REPO, "root", 1, gun=other), "METADATA_NOT_FOUND")
    assert (await service.get_current(REPO, "root", gun=GUN)).version == 1
    await service.delete(REPO, gun=other)  # not its data: nothing happens
    assert await service.current_gun(REPO) == GUN


async def test_load_includes_the_root_history(service: NotaryService) -> None:
    await replay(service)
    data = await trust_data(service)
    assert [parse_metadata(r, "root").version for r in data.root_history] == [1, 2, 3]
    assert verify_trust_data(data, GUN, NOW).versions["root"] == 4


# --- replicas sharing the storage ---------------------------------------------------------------


async def test_concurrent_publishes_from_two_replicas_commit_one(service: NotaryService, tmp_path: Path) -> None:
    """Two processes (each with its own lock) publishing on the same state: exactly one commits, the
    other gets UPDATING (its client publishes again), and the stored data stays whole."""
    import asyncio
    import contextlib

    await replay(service, upto=1)
    pointer_writes = asyncio.Barrier(2)

    class Racing(FilesystemDriver):
        """Holds a pointer write until the other replica reaches its own (the worst interleaving)."""

        async def put(self, key: str, data: bytes) -> None:
            if key.endswith("/current.json"):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pointer_writes.wait(), 0.5)
            await super().put(key, data)

    first = NotaryService(Racing(str(tmp_path)), PASSPHRASE, clock=lambda: NOW)
    replica = NotaryService(Racing(str(tmp_path)), PASSPHRASE, clock=lambda: NOW)
    parts = [("targets", history("targets", 3))]
    results = await asyncio.gather(first.publish(REPO, GUN, parts), replica.publish(REPO, GUN, parts),
                                   return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1, results
    assert isinstance(failures[0], NotaryError) and failures[0].code == "UPDATING"
    verify_trust_data(await trust_data(service), GUN, NOW)
    assert (await service.get_current(REPO, "targets")).data == history("targets", 3)
    await replica.publish(REPO, GUN, [("targets/releases", history("targets/releases", 1))])  # next state: free
    verify_trust_data(await trust_data(service), GUN, NOW)


async def test_a_crashed_writers_claim_blocks_only_until_it_is_stale(service: NotaryService, tmp_path: Path) -> None:
    import os

    from trust.server.store import CLAIM_STALE_SECONDS

    await replay(service, upto=1)
    state = await service.store.current(REPO)
    claim = service.store._claim_key(REPO, state, 0)
    assert await service.store.driver.put_if_absent(claim, b"{}")  # a writer that died after claiming
    parts = [("targets", history("targets", 3))]
    await expect_error(service.publish(REPO, GUN, parts), "UPDATING")
    old = os.stat(tmp_path / claim).st_mtime - CLAIM_STALE_SECONDS - 1
    os.utime(tmp_path / claim, (old, old))
    await service.publish(REPO, GUN, parts)
    assert (await service.get_current(REPO, "targets")).data == history("targets", 3)


async def test_a_claim_of_a_process_that_is_gone_is_stale_at_once(service: NotaryService) -> None:
    """After a crash and restart on the same host the old writer's claim does not block publishes;
    a fresh claim of a live writer, or of another host's, does."""
    import os
    import subprocess

    from trust.server import store as metadata_store

    await replay(service, upto=1)
    state = await service.store.current(REPO)
    exited = subprocess.Popen(["true"])
    exited.wait()
    host = metadata_store._host()
    stale = [
        {"host": host, "pid": exited.pid, "process": "x"},  # no such process any more
        {"host": host, "pid": os.getpid(), "process": "an earlier process with this pid"},
    ]
    for attempt, owner in enumerate(stale):
        assert await service.store.driver.put_if_absent(service.store._claim_key(REPO, state, attempt),
                                                        json.dumps(owner).encode())
    parts = [("targets", history("targets", 3))]
    last = service.store._claim_key(REPO, state, len(stale))
    for blocking in ({"host": "elsewhere", "pid": exited.pid, "process": "x"},  # another host: only time tells
                     {"host": host, "pid": os.getpid(), "process": metadata_store._PROCESS}):  # live
        assert await service.store.driver.put_if_absent(last, json.dumps(blocking).encode())
        await expect_error(service.publish(REPO, GUN, parts), "UPDATING")  # passed the stale two, stopped here
        await service.store.driver.delete(last)
    await service.publish(REPO, GUN, parts)
    assert (await service.get_current(REPO, "targets")).data == history("targets", 3)
