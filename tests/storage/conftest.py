"""Driver fixtures: the contract suite runs once per driver listed in DRIVERS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.base import StorageDriver
from storage.filesystem import FilesystemDriver

DRIVERS = ["filesystem"]


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StorageDriver]:
    if request.param == "filesystem":
        d: StorageDriver = FilesystemDriver(str(tmp_path / "root"))
    else:  # pragma: no cover - extended by other drivers
        raise AssertionError(request.param)
    yield d
    await d.close()
