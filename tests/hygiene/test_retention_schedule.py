"""The retention schedule: the registry process applies retention itself, one replica at a time."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.loader import ConfigError, parse_settings
from registry.app import create_app
from registry.retention_schedule import LEASES, Lease, seconds
from storage.filesystem import FilesystemDriver
from tests.registry.test_api import push_image


async def test_two_replicas_apply_retention_without_the_cli(tmp_path: Path) -> None:
    """Two servers on one storage, `interval: 1s`: the older tag goes with no `trustreg gc`, by one
    pass at a time (the lease chain in storage records who ran)."""
    root = tmp_path / "data"
    config = {"storage": {"filesystem": {"root": str(root)}}, "trust": {"keys": {"insecure_dev_passphrase": True}},
              "projects": {"app": {"retention": {"keep_last": 1, "delete_untagged": True}}},
              "retention_schedule": {"interval": "1s", "grace": 0}}
    replicas = [TestClient(TestServer(create_app(parse_settings(config)))) for _ in range(2)]
    for replica in replicas:
        await replica.start_server()
    try:
        _, first = await push_image(replicas[0], "app/web", "one", b"1")
        await asyncio.sleep(1.05)
        await push_image(replicas[1], "app/web", "two", b"2")
        tags = root / "repositories" / "app" / "web" / "_manifests" / "tags"
        deadline = time.monotonic() + 20
        while (tags / "one").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not (tags / "one").exists() and (tags / "two").exists()
        assert (await replicas[1].get("/v2/app/web/manifests/two")).status == 200
        assert (await replicas[0].get(f"/v2/app/web/manifests/{first}")).status == 404  # its manifest went too
        leases = [json.loads((root / LEASES / n).read_text()) for n in sorted((root / LEASES).iterdir())]
        assert leases and all(lease["finished"] for lease in leases[:-1])
    finally:
        for replica in replicas:
            await replica.close()


async def test_lease_one_holder_at_a_time(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    a, b = Lease(driver), Lease(driver)
    held = await a.acquire(interval=0, lease=60)
    assert held == 0
    assert await b.acquire(interval=0, lease=60) is None  # a runs
    await a.release(held, time.time())
    assert await b.acquire(interval=3600, lease=60) is None  # ran within the interval
    taken = await b.acquire(interval=0, lease=0.5)
    assert taken == 1
    await asyncio.sleep(0.6)  # b dies holding it: the lease expires
    assert await a.acquire(interval=0, lease=60) == 2
    assert sorted(p.name for p in (tmp_path / LEASES).iterdir()) == ["2"]  # older leases dropped


async def test_racing_replicas_get_one_lease(tmp_path: Path) -> None:
    driver = FilesystemDriver(str(tmp_path))
    won = await asyncio.gather(*(Lease(driver).acquire(interval=0, lease=60) for _ in range(8)))
    assert sorted(won, key=str) == [0] + [None] * 7


def test_schedule_configuration() -> None:
    assert seconds("24h") == 86400 and seconds(90) == 90 and seconds("1.5m") == 90
    base = {"trust": {"keys": {"insecure_dev_passphrase": True}}}
    with pytest.raises(ConfigError):
        parse_settings({**base, "retention_schedule": {"interval": "daily"}})
    with pytest.raises(ConfigError):
        parse_settings({**base, "retention_schedule": {"grace": "1h"}})
