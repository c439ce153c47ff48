"""The changefeed: durable in storage, one feed for every process sharing it, paged like notary-server,
and over HTTP authorized like reading trust data (the global feed lists only what the caller may pull).
(The paging itself is compared with notary-server in tests/notary/test_changefeed.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from registry.notary_api import NOTARY
from storage.filesystem import FilesystemDriver
from tests.auth.conftest import PASSWORDS, auth_config, basic, write_htpasswd
from tests.trust.factory import Signer, SyntheticRepo
from trust.keys import PublicKey
from trust.server import NotaryService
from trust.server.changefeed import ChangeFeed
from trust.signing import sign_signed
from trust.timeutil import utcnow

REPO_ROOT = Path(__file__).resolve().parents[2]


async def publish(service: NotaryService, repository: str, gun: str) -> None:
    """A docker-style first publish (root+targets, server-made snapshot and timestamp)."""
    repo = SyntheticRepo(gun, utcnow())
    for role in ("timestamp", "snapshot"):
        setattr(repo, role, Signer(None, PublicKey.from_dict(await service.get_key(repository, role))))  # type: ignore[arg-type]
    targets = sign_signed(repo.targets_signed({"v1": b"manifest"}), [repo.targets.pair])
    await service.publish(repository, gun, [("root", repo.sign_root(repo.root_signed())), ("targets", targets)])


async def test_two_services_on_one_storage_share_one_feed(tmp_path: Path) -> None:
    """Two services (as two replicas) publishing at once: one feed, IDs 1..N without gaps or repeats,
    each update naming the checksum of the timestamp it stored."""
    first, second = (NotaryService(FilesystemDriver(str(tmp_path)), "pw") for _ in range(2))
    jobs = [publish(service, f"p/r{i}", f"reg.example.com/p/r{i}") for i in range(6) for service in (first, second)
            if (i % 2 == 0) == (service is first)]
    await asyncio.gather(*jobs)
    await asyncio.gather(first.publish("p/r0", "reg.example.com/p/r0", []), second.delete("p/r1"))
    changes = await first.changes(0, 100)
    assert changes is not None and [c.id for c in changes] == list(range(1, 9))
    assert changes == await second.changes(0, 100)
    for change in changes:
        if change.category == "update" and change.repository != "p/r1":  # p/r1 is deleted
            stored = await first.get_by_version(change.repository, "timestamp", change.version)
            assert hashlib.sha256(stored.data).hexdigest() == change.sha256
    assert [(c.gun, c.category, c.version) for c in changes[-2:]] in (
        [("reg.example.com/p/r0", "update", 2), ("reg.example.com/p/r1", "deletion", 0)],
        [("reg.example.com/p/r1", "deletion", 0), ("reg.example.com/p/r0", "update", 2)],
    )
    # survives a restart: a new service continues the sequence
    third = NotaryService(FilesystemDriver(str(tmp_path)), "pw")
    await publish(third, "p/late", "reg.example.com/p/late")
    assert [c.id for c in await third.changes(-1, 1) or []] == [9]


def test_processes_record_without_gaps(tmp_path: Path) -> None:
    """Writers in separate processes (create-only objects, no shared memory): 2 x 40 records, IDs 1..80."""
    code = textwrap.dedent(f"""
        import asyncio
        from storage.filesystem import FilesystemDriver
        from trust.server.changefeed import ChangeFeed
        async def main():
            feed = ChangeFeed(FilesystemDriver({str(tmp_path)!r}))
            for i in range(40):
                await feed.record("g", "r", "update", i + 1, "x")
        asyncio.run(main())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    found = asyncio.run(ChangeFeed(FilesystemDriver(str(tmp_path))).page(0, 1000))
    assert found is not None and [c.id for c in found] == list(range(1, 81))


async def test_feeds_are_authorized_like_reading_trust_data(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = await registry(auth_config(write_htpasswd(tmp_path / "htpasswd", PASSWORDS)))
    service: NotaryService = client.app[NOTARY]
    host = f"127.0.0.1:{client.server.port}"
    for repository in ("secure/app", "other/app", "pub/app"):
        await publish(service, repository, f"{host}/{repository}")

    async def feed(path: str, user: str | None) -> tuple[int, Any]:
        resp = await client.get(path, headers=basic(user) if user else {})
        return resp.status, (await resp.json() if resp.status == 200 else None)

    def guns(body: Any) -> list[str]:
        return [r["GUN"] for r in body["records"]]

    status, body = await feed("/v2/_trust/changefeed?records=10", "root")
    assert status == 200 and guns(body) == [f"{host}/{r}" for r in ("secure/app", "other/app", "pub/app")]
    status, body = await feed("/v2/_trust/changefeed?records=10", "carol")  # pulls `secure` (and public `pub`)
    assert status == 200 and guns(body) == [f"{host}/secure/app", f"{host}/pub/app"]
    assert [r["ID"] for r in body["records"]] == ["1", "3"]
    status, body = await feed("/v2/_trust/changefeed?records=1", "carol")  # paging counts visible records
    assert guns(body) == [f"{host}/secure/app"]
    status, body = await feed("/v2/_trust/changefeed?records=10", "stranger")
    assert status == 200 and guns(body) == [f"{host}/pub/app"]  # public projects only
    assert (await feed("/v2/_trust/changefeed?records=10", None))[0] == 401
    assert (await feed(f"/v2/{host}/other/app/_trust/changefeed?records=10", "carol"))[0] == 403
    status, body = await feed(f"/v2/{host}/pub/app/_trust/changefeed?records=10", None)  # public project
    assert status == 200 and guns(body) == [f"{host}/pub/app"]
    status, body = await feed(f"/v2/{host}/secure/app/_trust/changefeed?records=x", "carol")
    assert status == 400
    resp = await client.get("/v2/other.example.com/secure/app/_trust/changefeed?records=1", headers=basic("root"))
    assert resp.status == 400 and (await resp.json())["errors"][0]["code"] == "INVALID_GUN"


async def test_server_resigning_is_recorded(tmp_path: Path) -> None:
    """A read that re-signs an expiring timestamp is an update too (notary-server records every stored
    timestamp)."""
    from datetime import timedelta

    from tests.trust.test_server import Clock

    clock = Clock(utcnow())
    service = NotaryService(FilesystemDriver(str(tmp_path)), "pw", clock=clock)
    repo = SyntheticRepo("reg.example.com/p/r", clock.now)
    for role in ("timestamp", "snapshot"):
        setattr(repo, role, Signer(None, PublicKey.from_dict(await service.get_key("p/r", role))))  # type: ignore[arg-type]
    targets = sign_signed(repo.targets_signed({"v1": b"m"}), [repo.targets.pair])
    await service.publish("p/r", repo.gun, [("root", repo.sign_root(repo.root_signed())), ("targets", targets)])
    clock.now += timedelta(days=14)
    served = await service.get_current("p/r", "timestamp")
    changes = await service.changes(0, 10, gun=repo.gun)
    assert [(c.version, c.category) for c in changes or []] == [(1, "update"), (2, "update")]
    assert changes is not None and changes[-1].sha256 == hashlib.sha256(served.data).hexdigest()
