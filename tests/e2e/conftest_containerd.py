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
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{root}/certs.d"
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

    @property
    def hosts_dir(self) -> Path:
        """The hosts directory (`ctr --hosts-dir`, and the CRI plugin's registry config_path)."""
        return self.root / "certs.d"

    def trust_registry(self, addr: str) -> None:
        """Talk https to `addr` without verifying its throwaway certificate."""
        d = self.hosts_dir / addr
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(
            f'server = "https://{addr}"\n\n[host."https://{addr}"]\n  capabilities = ["pull", "resolve", "push"]\n'
            "  skip_verify = true\n"
        )

    def cri_pull(self, image: str, timeout: float = 300) -> str:
        """What the kubelet does: CRI `runtime.v1.ImageService/PullImage`; returns the image ref.

        The two messages are tiny, so they are encoded by hand (protobuf wire format) instead of
        generating stubs: PullImageRequest{image: ImageSpec{image: string}} -> PullImageResponse{
        image_ref: string}. Raises grpc.RpcError on failure."""
        import grpc

        def field(number: int, payload: bytes) -> bytes:
            return bytes([(number << 3) | 2]) + _varint(len(payload)) + payload

        request = field(1, field(1, image.encode()))
        with grpc.insecure_channel(f"unix://{self.sock}") as channel:
            pull = channel.unary_unary("/runtime.v1.ImageService/PullImage")
            response = pull(request, timeout=timeout, metadata=[("containerd-namespace", "k8s.io")])
        assert response[:1] == b"\x0a", response
        length, pos = _read_varint(response, 1)
        return response[pos:pos + length].decode()

    def log(self) -> str:
        return (self.root / "containerd.log").read_text(errors="replace")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """containerd with a private root/state/socket; stopped (only this one) at the end of the session."""
    require("containerd", "ctr")
    root = Path(tempfile.mkdtemp(prefix="trustreg-ctrd-", dir="/tmp"))
    sock = root / "c.sock"
    (root / "config.toml").write_text(CONFIG.format(root=root, sock=sock))
    (root / "certs.d").mkdir()
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
