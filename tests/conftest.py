"""Shared fixtures: a registry app on a real loopback server, for every storage driver."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.loader import parse_settings
from registry.app import create_app
from storage.base import StorageDriver
from storage.factory import create_driver
from tests import s3server

REGISTRY_DRIVERS = ["filesystem", "s3"]

ClientFactory = Callable[..., Awaitable[TestClient]]


moto_endpoint = s3server.moto_endpoint  # session fixture: one moto server (real HTTP on loopback)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """In-process `trustreg` CLI calls point the root logger at this test's captured stderr, which
    pytest closes afterwards: put the root logger back as it was, so later tests' logs go somewhere."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class DriverFactory:
    """Creates drivers that all see the same backing store (like processes sharing it)."""

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        self.kind = kind
        self.config = config

    def __call__(self) -> StorageDriver:
        return create_driver({self.kind: self.config})


@pytest.fixture(params=REGISTRY_DRIVERS)
def make_driver(request: pytest.FixtureRequest, tmp_path) -> DriverFactory:
    """Every registry test runs on every driver: the filesystem, and S3 (moto server mode)."""
    if request.param == "filesystem":
        return DriverFactory("filesystem", {"root": str(tmp_path / "data")})
    endpoint = request.getfixturevalue("moto_endpoint")
    return DriverFactory("s3", s3server.s3_config(endpoint, s3server.create_bucket(endpoint)))


@pytest.fixture
async def registry(aiohttp_client, make_driver) -> AsyncIterator[ClientFactory]:
    """`await registry(config_dict)` -> a client of a real server running that configuration."""

    async def start(config: dict[str, Any] | None = None) -> TestClient:
        config = dict(config or {})
        config.setdefault("trust", {"keys": {"insecure_dev_passphrase": True}})
        settings = parse_settings(config)
        return await aiohttp_client(create_app(settings, driver=make_driver()))

    yield start


@pytest.fixture
async def client(registry: ClientFactory) -> TestClient:
    return await registry()
