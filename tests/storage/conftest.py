"""Driver fixtures: the contract suite runs once per driver listed in DRIVERS.

The s3 driver runs against moto's server mode (a real HTTP endpoint on loopback, see tests/s3server.py),
started once per session; every test gets its own bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.base import StorageDriver
from storage.filesystem import FilesystemDriver
from tests import s3server
from tests.s3server import create_bucket, s3_config

DRIVERS = ["filesystem", "s3", "memory"]

moto_endpoint = s3server.moto_endpoint  # session fixture: one moto server for the storage tests


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket on the session's moto server."""
    return create_bucket(moto_endpoint)


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StorageDriver]:
    if request.param == "filesystem":
        d: StorageDriver = FilesystemDriver(str(tmp_path / "root"))
    elif request.param == "s3":
        from storage.s3 import S3Driver

        endpoint = request.getfixturevalue("moto_endpoint")
        d = S3Driver.from_config(s3_config(endpoint, create_bucket(endpoint), prefix="reg/"))
    elif request.param == "memory":
        from storage.memory import MemoryDriver

        d = MemoryDriver()
    else:  # pragma: no cover - extended by other drivers
        raise AssertionError(request.param)
    yield d
    await d.close()
