"""Shared fixtures: a registry app on a real loopback server, for every storage driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.loader import parse_settings
from registry.app import create_app
from storage.base import StorageDriver
from storage.filesystem import FilesystemDriver

REGISTRY_DRIVERS = ["filesystem"]

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(params=REGISTRY_DRIVERS)
def make_driver(request: pytest.FixtureRequest, tmp_path) -> Callable[[], StorageDriver]:
    """A factory of drivers that all see the same backing store (like processes sharing it)."""
    if request.param == "filesystem":
        return lambda: FilesystemDriver(str(tmp_path / "data"))
    raise AssertionError(request.param)  # pragma: no cover


@pytest.fixture
async def registry(aiohttp_client, make_driver) -> AsyncIterator[ClientFactory]:
    """`await registry(config_dict)` -> a client of a real server running that configuration."""

    async def start(config: dict[str, Any] | None = None) -> TestClient:
        settings = parse_settings(config or {})
        return await aiohttp_client(create_app(settings, driver=make_driver()))

    yield start


@pytest.fixture
async def client(registry: ClientFactory) -> TestClient:
    return await registry()
