"""A real S3 HTTP endpoint for tests: moto's server mode in a subprocess on a free loopback port.

    endpoint, stop = start_moto()
    bucket = create_bucket(endpoint)
    driver = S3Driver.from_config(s3_config(endpoint, bucket))
    ...
    stop()

or, in pytest, import the session fixture into a conftest: `from tests.s3server import moto_endpoint`.

Everything talks to it through boto3 over HTTP; nothing is patched in-process. `env` lets a test start
a stricter server, e.g. `{"INITIAL_NO_AUTH_ACTION_COUNT": "0"}` to make moto check credentials.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(env: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[str, Callable[[], None]]:
    """Start `python -m moto.server` on a free port; returns (endpoint_url, stop)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError(f"moto server did not listen on port {port} within {timeout}s") from None
            time.sleep(0.1)
    return f"http://127.0.0.1:{port}", stop


def client(endpoint_url: str) -> Any:
    """A plain boto3 S3 client for the moto endpoint (for setup and inspection in tests)."""
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=REGION
    ).client("s3", endpoint_url=endpoint_url)


def create_bucket(endpoint_url: str, name: str | None = None) -> str:
    """Create a fresh bucket (random name unless given) and return its name."""
    name = name or f"test-{uuid.uuid4().hex[:20]}"
    client(endpoint_url).create_bucket(Bucket=name)
    return name


def s3_config(endpoint_url: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """A `storage.s3` config section for the moto endpoint (5 MiB parts keep tests small)."""
    cfg: dict[str, Any] = {
        "bucket": bucket,
        "endpoint_url": endpoint_url,
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "part_size": 5 * 1024 * 1024,
        "max_workers": 4,
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto S3 server shared by the whole session (import it into a conftest to use it)."""
    endpoint, stop = start_moto()
    try:
        yield endpoint
    finally:
        stop()
