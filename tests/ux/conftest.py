"""What a new user runs: the real `trustreg` command in a scratch directory, on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO, Server, dockerd, trustreg, wait_ready  # noqa: F401
from tests.s3server import free_port

CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith("TRUSTREG_") and k not in ("TRUSTREG_TRUST_PASSPHRASE",)}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `trustreg ARGS` to completion (no TRUSTREG_* variables unless given)."""
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**CLEAN_ENV, "PYTHONPATH": str(REPO), **(env or {})})


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`serve(*args, env=..., cwd=...)`: `trustreg serve ARGS` on a free port (TRUSTREG__HTTP__ADDR), ready."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, ready: bool = True) -> Server:
        port = free_port()
        log_path = tmp_path / f"serve-{port}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "serve", *args], cwd=cwd or tmp_path,
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
            env={**CLEAN_ENV, "PYTHONPATH": str(REPO), "TRUSTREG__HTTP__ADDR": f"127.0.0.1:{port}", **(env or {})},
        )
        server = Server(port, proc, cwd or tmp_path, tmp_path / "-", log_path)
        started.append(server)
        if ready:
            wait_ready(server)
        return server

    yield start
    for server in started:
        server.stop()
