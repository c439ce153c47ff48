"""A really full disk: the registry on a tiny tmpfs answers a clear 507 in the spec's format, leaves
nothing half-written, and keeps serving what it already stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.check import check_storage
from storage.filesystem import FilesystemDriver


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def post(url: str, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_real_enospc(trustreg, tiny_disk: Path) -> None:
    server = trustreg({"storage": {"filesystem": {"root": str(tiny_disk / "data")}}})
    small = os.urandom(1024 * 1024)
    small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
    assert post(f"{server.url}/v2/full/app/blobs/uploads/?digest={small_digest}", small)[0] == 201
    big = os.urandom(8 * 1024 * 1024)
    big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
    status, body = post(f"{server.url}/v2/full/app/blobs/uploads/?digest={big_digest}", big)
    assert status == 507, body
    error = json.loads(body)["errors"][0]
    assert "no space left" in error["message"].lower()
    with urllib.request.urlopen(f"{server.url}/v2/full/app/blobs/{small_digest}", timeout=30) as resp:
        assert resp.read() == small
    report = asyncio.run(check_storage(FilesystemDriver(str(tiny_disk / "data"))))
    assert not report.problems, report.problems
    leftovers = [p for p in (tiny_disk / "data").rglob("*") if p.is_file() and p.stat().st_size >= len(big) // 2]
    assert leftovers == []  # the failed upload was removed, not left half-written
