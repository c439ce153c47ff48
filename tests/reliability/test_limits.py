"""Limits: body size limits (manifests, trust uploads), clients that stall mid-request (`http.client_timeout`),
and a full disk (ENOSPC): a clear 507 in the spec's format with nothing half-written left behind."""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import storage.filesystem
from registry import notary_api
from registry.check import check_storage
from storage.filesystem import FilesystemDriver
from storage.filesystem import _write_all as real_write_all
from tests.e2e.conftest import Server
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.reliability.server import Reply, ThreadedServer
from tests.reliability.support import TrustPublisher

REPO = "limits/app"


def spec_error(reply: Reply, status: int, code: str | None = None) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body[:300])
    err = json.loads(reply.body)["errors"][0]
    assert isinstance(err["message"], str) and b"Traceback" not in reply.body
    if code is not None:
        assert err["code"] == code
    return err


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(tmp_path / "data") as srv:
        yield srv


# --- body size limits ----------------------------------------------------------------------------
def test_manifest_over_4_mib_is_refused_before_reading_it(server: ThreadedServer) -> None:
    reply = server.request("PUT", f"/v2/{REPO}/manifests/big", b"{}",
                           {"Content-Type": OCI_MANIFEST, "Content-Length": str(64 << 20)})
    spec_error(reply, 413, "SIZE_INVALID")


def test_trust_upload_over_the_limit(server: ThreadedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notary_api, "MAX_UPLOAD", 1000)
    body = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"root\"\r\n\r\n"
            + b"x" * 2000 + b"\r\n--B--\r\n")
    reply = server.request("POST", f"/v2/127.0.0.1:{server.port}/{REPO}/_trust/tuf/", body,
                           {"Content-Type": "multipart/form-data; boundary=B"})
    assert "exceeds 1000 bytes" in str(spec_error(reply, 400, "MALFORMED_UPLOAD"))


# --- stalled clients -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stall_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.e2e.conftest import start_server

    srv = start_server(tmp_path_factory.mktemp("stall"), {"http": {"client_timeout": 1}})
    yield srv
    srv.stop()


def raw(server: Server, head: bytes, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(30)  # hang guard only: the server must act long before
    sock.sendall(head + body)
    return sock


def read_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return out


def test_stalled_headers_connection_is_closed(stall_server: Server) -> None:
    sock = raw(stall_server, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert b"HTTP/1.1 200" not in read_all(sock)  # closed without ever completing the request


@pytest.mark.parametrize("kind", ["manifest", "monolithic", "patch", "trust"])
def test_stalled_body_is_cut_off_with_408(stall_server: Server, kind: str) -> None:
    import urllib.request

    base = stall_server.url
    location = None
    if kind == "patch":
        req = urllib.request.Request(f"{base}/v2/{REPO}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(req) as resp:
            location = resp.headers["Location"]
    target = {
        "manifest": f"PUT /v2/{REPO}/manifests/stalled",
        "monolithic": f"POST /v2/{REPO}/blobs/uploads/?digest={digest_of(b'x' * 100)}",
        "patch": f"PATCH {location}",
        "trust": f"POST /v2/{stall_server.addr}/{REPO}/_trust/tuf/",
    }[kind]
    ctype = "multipart/form-data; boundary=B" if kind == "trust" else "application/octet-stream"
    head = f"{target} HTTP/1.1\r\nHost: {stall_server.addr}\r\nContent-Type: {ctype}\r\nContent-Length: 100\r\n\r\n"
    sock = raw(stall_server, head.encode(), b"--B\r\n" if kind == "trust" else b"only ten b")
    resp = http.client.HTTPResponse(sock)  # read by Content-Length: the server may linger before closing
    resp.begin()
    reply = Reply("PUT", resp.status, resp.headers, resp.read())
    sock.close()
    assert spec_error(reply, 408)["message"].startswith("client sent no data")
    if location is not None:  # the partial chunk was not kept: the session is as it was
        with urllib.request.urlopen(urllib.request.Request(f"{base}{location}")) as resp:
            assert resp.status == 204 and resp.headers["Range"] == "0-0"
    with urllib.request.urlopen(f"{base}/v2/") as resp:  # and the server serves others meanwhile
        assert resp.status == 200


# --- full disk -----------------------------------------------------------------------------------
class FullDisk:
    """`open` (and the descriptor writer `_write_all`) for the filesystem driver: writes fail with
    ENOSPC once `budget` bytes (over all files) are used up."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = open(path, mode, *args, **kwargs)  # noqa: SIM115 - returned wrapped, closed by the caller
        return _LimitedFile(f, self) if any(c in mode for c in "wax+") else f

    def write_all(self, fd: int, data: bytes) -> None:
        self.spend(len(data))
        real_write_all(fd, data)

    def spend(self, size: int) -> None:
        if size > self.budget:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= size


class _LimitedFile:
    def __init__(self, f: Any, disk: FullDisk) -> None:
        self._f = f
        self._disk = disk

    def write(self, data: bytes) -> int:
        self._disk.spend(len(data))
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _LimitedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    full = FullDisk(float("inf"))
    monkeypatch.setattr(storage.filesystem, "open", full, raising=False)
    monkeypatch.setattr(storage.filesystem, "_write_all", full.write_all)
    return full


def leftovers(root: Path) -> list[str]:
    """Temp files and upload sessions anywhere in storage."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        found += [os.path.join(dirpath, n) for n in dirs + files if n.startswith(".tmp-")]
        if "/_uploads" in dirpath:
            found += [os.path.join(dirpath, n) for n in files]
    found += [str(p) for p in (root / "uploads").glob("*")] if (root / "uploads").exists() else []
    return found


def assert_consistent(server: ThreadedServer) -> None:
    report = server.run(check_storage(FilesystemDriver(str(server.root))))
    assert [str(p) for p in report.problems] == []
    assert leftovers(server.root) == []


@pytest.mark.parametrize("budget", [0, 30_000])
def test_disk_full_during_blob_upload(server: ThreadedServer, disk: FullDisk, budget: int) -> None:
    data = os.urandom(200_000)
    disk.budget = budget
    reply = server.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest_of(data)}", data)
    assert "no space left" in spec_error(reply, 507)["message"]
    assert server.request("HEAD", f"/v2/{REPO}/blobs/{digest_of(data)}").status == 404
    assert_consistent(server)
    disk.budget = float("inf")
    reply = server.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest_of(data)}", data)
    assert reply.status == 201
    assert server.request("GET", f"/v2/{REPO}/blobs/{digest_of(data)}").body == data


def test_disk_full_during_a_chunk_keeps_the_session_as_it_was(server: ThreadedServer, disk: FullDisk) -> None:
    location = server.request("POST", f"/v2/{REPO}/blobs/uploads/").headers["Location"]
    assert server.request("PATCH", location, b"0123456789", {"Content-Range": "0-9"}).status == 202
    disk.budget = 5
    reply = server.request("PATCH", location, b"abcdefghij" * 100, {"Content-Range": "10-1009"})
    spec_error(reply, 507)
    assert server.request("GET", location).headers["Range"] == "0-9"
    disk.budget = float("inf")
    reply = server.request("PUT", f"{location}?digest={digest_of(b'0123456789tail')}", b"tail")
    assert reply.status == 201


@pytest.mark.parametrize("budget", [0, 20])
def test_disk_full_during_manifest_push(server: ThreadedServer, disk: FullDisk, budget: int) -> None:
    config = b'{"c":1}'
    assert server.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest_of(config)}", config).status == 201
    manifest = image_manifest(config, [])
    disk.budget = budget
    reply = server.request("PUT", f"/v2/{REPO}/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST})
    spec_error(reply, 507)
    assert server.request("GET", f"/v2/{REPO}/manifests/v1").status == 404
    assert_consistent(server)
    disk.budget = float("inf")
    assert server.request("PUT", f"/v2/{REPO}/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST}).status == 201
    assert_consistent(server)


@pytest.mark.parametrize("budget", [0, 3000])
def test_disk_full_during_trust_publish(server: ThreadedServer, disk: FullDisk, budget: int) -> None:
    gun = f"127.0.0.1:{server.port}/{REPO}"
    publisher = TrustPublisher(gun)

    keys = {role: json.loads(server.request("GET", f"/v2/{gun}/_trust/tuf/{role}.key").body)
            for role in ("timestamp", "snapshot")}

    async def get_key(role: str) -> dict[str, Any]:
        return keys[role]

    parts = asyncio.run(publisher.parts(get_key, "v1", "sha256:" + "a" * 64, 10))
    from tests.reliability.test_hostile import multipart_body

    body = multipart_body(parts, "B", True)
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    disk.budget = budget
    spec_error(server.request("POST", f"/v2/{gun}/_trust/tuf/", body, headers), 507)
    assert server.request("GET", f"/v2/{gun}/_trust/tuf/root.json").status == 404
    assert_consistent(server)
    disk.budget = float("inf")
    assert server.request("POST", f"/v2/{gun}/_trust/tuf/", body, headers).status == 200
    assert_consistent(server)
