"""Fixtures of the events tests: the webhook receiver, and moto for S3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import s3server
from tests.e2e.conftest import certs, image, test_image, trustreg  # noqa: F401  (fixtures)
from tests.events.receiver import Receiver

moto_endpoint = s3server.moto_endpoint
SECRET = b"hook-secret-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started receiver; `security` deliveries must carry the HMAC made with SECRET."""
    r = Receiver(secrets={"security": SECRET}).start()
    yield r
    try:
        r.stop()
    except Exception:  # already stopped by the test
        pass
