"""The outbox and its delivery worker, in-process on a real loopback server, on both drivers
(filesystem and S3 through moto): two apps sharing one storage deliver each event once, a crashed
replica's lease expires and another takes over, failing endpoints are retried then dead-lettered,
the outbox bound drops (and counts) instead of slowing pushes, and the principal is recorded."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from registry.events.outbox import DEAD, OUTBOX, Outbox
from registry.events.record import Record, make_body, new_id
from tests.auth.conftest import basic, write_htpasswd
from tests.events.receiver import Receiver
from tests.helpers import OCI_MANIFEST, digest_of
from tests.registry.test_api import push_image

FAST = {"poll_seconds": 0.1, "retry": {"initial_seconds": 0.05, "max_seconds": 0.2}}


def config(receiver: Receiver, endpoint: str, types: list[str], **events: Any) -> dict[str, Any]:
    return {"events": {**FAST, **events, "endpoints": [
        {"name": endpoint, "url": receiver.url(endpoint), "types": types}]}}


def sample(name: str, endpoint: str) -> float:
    return REGISTRY.get_sample_value(name, {"endpoint": endpoint}) or 0.0


async def until(predicate, timeout: float = 20.0) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def drained(driver, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the outbox is empty: records are removed just after their last delivery."""
    deadline = time.monotonic() + timeout
    while await driver.list(OUTBOX):
        assert time.monotonic() < deadline, await driver.list(OUTBOX)
        await asyncio.sleep(0.05)


async def test_two_replicas_deliver_each_event_once(registry, make_driver, receiver: Receiver) -> None:
    cfg = config(receiver, "twice", ["artifact.pushed"])
    replicas = [await registry(cfg), await registry(cfg)]
    pushed = [(await push_image(replicas[i % 2], "lib/app", f"t{i}", str(i).encode()))[1] for i in range(12)]
    await until(lambda: len(receiver.of("twice")) >= 12)
    await asyncio.sleep(1.0)  # ten scans of each replica more: nothing arrives twice
    assert receiver.duplicates() == [] and receiver.problems == []
    assert sorted(e["subject"] for e in receiver.of("twice")) == sorted(
        f"lib/app:t{i}@{d}" for i, d in enumerate(pushed))
    await drained(make_driver())  # finished records are removed


async def test_crashed_replicas_lease_expires(registry, make_driver, receiver: Receiver) -> None:
    """A replica claimed an event and died while sending: once its lease expires another one sends it."""
    driver = make_driver()
    event_id = new_id()
    record = Record(event_id, "artifact.pushed",
                    make_body("artifact.pushed", "http://dead.example", "lib/x:1@sha256:00", {}, event_id), ("lease",))
    crashed = Outbox(driver, "crashed-replica")
    await crashed.append(record)
    claim = await crashed.claim("lease", event_id, lease_seconds=1.5)
    assert claim is not None and not isinstance(claim, float) and claim.number == 1
    started = time.monotonic()
    await registry(config(receiver, "lease", ["artifact.pushed"]))
    await until(lambda: receiver.of("lease"))
    assert time.monotonic() - started >= 1.0  # not before the crashed replica's lease ran out
    assert [e["id"] for e in receiver.of("lease")] == [event_id]
    await drained(driver)


async def test_failing_endpoint_retried_then_dead_lettered(registry, make_driver, receiver: Receiver) -> None:
    receiver.fail.add("failing")
    before = {m: sample(m, "failing") for m in ("trustreg_events_failed_attempts_total",
                                                 "trustreg_events_dead_lettered_total")}
    client = await registry(config(receiver, "failing", ["artifact.pushed"], retry={
        "initial_seconds": 0.05, "max_seconds": 0.1, "max_attempts": 3}))
    _, digest = await push_image(client, "lib/app", "v1")
    driver = make_driver()
    deadline = time.monotonic() + 20
    while not (letters := await driver.list(f"{DEAD}/failing")):
        assert time.monotonic() < deadline, "no dead letter"
        await asyncio.sleep(0.05)
    letter = json.loads(await driver.get(f"{DEAD}/failing/{letters[0]}"))
    assert letter["attempts"] == 3 and letter["error"] == "HTTP 500"
    assert letter["event"]["subject"] == f"lib/app:v1@{digest}"
    assert sample("trustreg_events_failed_attempts_total", "failing") - before[
        "trustreg_events_failed_attempts_total"] == 3
    await until(lambda: sample("trustreg_events_dead_lettered_total", "failing")
                - before["trustreg_events_dead_lettered_total"] == 1)
    await drained(driver)
    assert receiver.of("failing") == []


async def test_full_outbox_drops_and_counts(registry, make_driver, receiver: Receiver) -> None:
    receiver.hang.add("bounded")
    dropped = sample("trustreg_events_dropped_total", "bounded")
    client = await registry(config(receiver, "bounded", ["artifact.pushed"], max_pending=3, timeout_seconds=60))
    for i in range(8):
        await push_image(client, "lib/app", f"t{i}", str(i).encode())  # every push succeeds
    assert len(await make_driver().list(OUTBOX)) == 3
    assert sample("trustreg_events_dropped_total", "bounded") - dropped == 5


async def test_principal_and_request_id(registry, receiver: Receiver, tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alice-pw"})
    client = await registry({
        "events": {**config(receiver, "who", ["artifact.pushed", "artifact.deleted"])["events"],
                   "source": "https://registry.example.test"},
        "auth": {"htpasswd": str(htpasswd)},
        "projects": {"lib": {"members": {"alice": ["pull", "push", "delete"]}}},
        "trust": {"keys": {"insecure_dev_passphrase": True}},
    })
    client.session.headers.update(basic("alice", "alice-pw"))
    _, digest = await push_image(client, "lib/app", "v1")
    resp = await client.delete("/v2/lib/app/manifests/v1")
    assert resp.status == 202
    pushed = await until(lambda: receiver.of("who", "artifact.pushed"))
    deleted = await until(lambda: receiver.of("who", "artifact.deleted"))
    assert pushed[0]["data"]["principal"] == "alice" and deleted[0]["data"]["principal"] == "alice"
    assert deleted[0]["subject"] == f"lib/app:v1@{digest}"  # a tag deleted: tag and digest
    assert pushed[0]["data"]["requestId"] != deleted[0]["data"]["requestId"]
    assert pushed[0]["source"] == deleted[0]["source"] == "https://registry.example.test"


async def test_no_events_section_writes_nothing(client, make_driver) -> None:
    await push_image(client, "lib/app", "v1")
    assert await make_driver().list("events") == []


async def test_concurrent_claims_have_one_winner(make_driver) -> None:
    """Three replicas (drivers) claim the same attempts at the same moment: each has exactly one owner."""
    outboxes = [Outbox(make_driver(), f"replica-{i}") for i in range(3)]
    ids = []
    for n in range(10):
        event_id = new_id()
        await outboxes[n % 3].append(Record(event_id, "artifact.pushed", b"{}", ("ep",)))
        ids.append(event_id)
    claims = await asyncio.gather(*(o.claim("ep", i, 30) for i in ids for o in outboxes))
    for k, event_id in enumerate(ids):
        won = [c for c in claims[3 * k:3 * k + 3] if c is not None and not isinstance(c, float)]
        assert len(won) == 1 and won[0].number == 1, (event_id, claims[3 * k:3 * k + 3])
    # while the lease runs, nobody else may start attempt 2
    again = await asyncio.gather(*(o.claim("ep", i, 30) for i in ids for o in outboxes))
    assert all(isinstance(c, float) for c in again)


async def test_sweep_removes_expired_records_orphans_and_old_dead_letters(make_driver) -> None:
    driver = make_driver()
    outbox = Outbox(driver, "sweeper")
    old = f"{(time.time_ns() - 3 * 86400 * 10**9):020d}-{'a' * 16}"  # three days old
    fresh = new_id()
    await outbox.append(Record(old, "artifact.pushed", b"{}", ("gone",)))  # its endpoint is configured nowhere
    await outbox.append(Record(fresh, "artifact.pushed", b"{}", ("gone",)))
    await driver.put(f"events/endpoints/gone/{old}/lease-000001", b"{}")
    orphan = f"{(time.time_ns() - 2 * 3600 * 10**9):020d}-{'b' * 16}"  # state of a record deleted 2 h ago
    await driver.put(f"events/endpoints/gone/{orphan}/done", b"{}")
    await driver.put(f"{DEAD}/gone/{old}", b"{}")
    await driver.put(f"{DEAD}/gone/{fresh}", b"{}")
    removed = await outbox.sweep(await outbox.pending(), expire_after=86400, dead_letter_age=2 * 86400)
    assert removed == 3
    assert await outbox.pending() == [fresh]
    assert await driver.list("events/endpoints/gone") == []
    assert await driver.list(f"{DEAD}/gone") == [fresh]


async def test_failed_append_never_fails_the_push(registry, make_driver, receiver: Receiver) -> None:
    """Storage refuses the outbox write (a file stands where its directory goes): the push succeeds,
    the event is counted as dropped."""
    if make_driver.kind != "filesystem":
        pytest.skip("a filesystem-only way to make one key unwritable")
    (Path(make_driver.config["root"]) / "events").mkdir(parents=True)
    (Path(make_driver.config["root"]) / "events" / "outbox").write_text("not a directory")
    dropped = sample("trustreg_events_dropped_total", "unwritable")
    client = await registry(config(receiver, "unwritable", ["artifact.pushed"]))
    await push_image(client, "lib/app", "v1")  # asserts 201
    assert sample("trustreg_events_dropped_total", "unwritable") - dropped == 1


async def test_signature_added_for_a_cosign_sig_tag_only(registry, receiver: Receiver) -> None:
    """A cosign legacy `.sig` manifest (simple-signing layer) is a signature of the digest its tag
    names; an ordinary image is not."""
    client = await registry(config(receiver, "sigs", ["signature.added"]))
    _, image = await push_image(client, "lib/app", "v1")
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": image}}}).encode()
    config_blob = b'{"architecture":"","os":""}'
    for blob in (payload, config_blob):
        resp = await client.post(f"/v2/lib/app/blobs/uploads/?digest={digest_of(blob)}", data=blob)
        assert resp.status == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config_blob),
                   "size": len(config_blob)},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": digest_of(payload),
                    "size": len(payload), "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}],
    }).encode()
    tag = image.replace(":", "-") + ".sig"
    resp = await client.put(f"/v2/lib/app/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert resp.status == 201
    added = await until(lambda: receiver.of("sigs"))
    await asyncio.sleep(0.5)
    assert len(receiver.of("sigs")) == 1  # the image itself was no signature
    assert added[0]["subject"] == f"lib/app:{tag}@{digest_of(manifest)}"
    assert added[0]["data"]["kind"] == "cosign" and added[0]["data"]["signedDigest"] == image
