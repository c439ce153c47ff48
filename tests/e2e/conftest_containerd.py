"""A private containerd (the kubelet's image path) for end-to-end tests.

Import the fixture into a test module (`from tests.e2e.conftest_containerd import containerd`).
It runs with its own root, state dir and socket under /tmp and the native snapshotter; the CRI
plugin stays enabled so the CRI ImageService can be driven too (`Containerd.sock`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import require

CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.invalid/pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
"""


@dataclass
class Containerd:
    """A running private containerd; `ctr(...)` talks to it (namespace `trustreg-test`)."""

    sock: Path
    root: Path

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["ctr", "-a", str(self.sock), "-n", "trustreg-test", *args],
            env={**os.environ, "CONTAINERD_SNAPSHOTTER": "native"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def log(self) -> str:
        return (self.root / "containerd.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """containerd with a private root/state/socket; stopped (only this one) at the end of the session."""
    require("containerd", "ctr")
    root = Path(tempfile.mkdtemp(prefix="trustreg-ctrd-", dir="/tmp"))
    sock = root / "c.sock"
    (root / "config.toml").write_text(CONFIG.format(root=root, sock=sock))
    proc = subprocess.Popen(
        ["containerd", "--config", str(root / "config.toml")],
        stdout=(root / "containerd.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    c = Containerd(sock, root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"containerd exited with {proc.returncode}:\n{c.log()}")
        if sock.exists() and c.ctr("version", check=False, timeout=10).returncode == 0:
            break
        time.sleep(0.3)
    else:
        proc.terminate()
        raise RuntimeError(f"containerd did not start:\n{c.log()}")
    yield c
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(root, ignore_errors=True)
