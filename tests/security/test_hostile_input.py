"""Issue 15 §5: hostile input gets the right 4xx and at most one short log line, never a 500 or a
traceback. Against the real `trustreg serve` process on a loopback port, over raw sockets (so the
bytes sent are exactly the hostile ones), reading the process's own log."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Server, start_server

HUGE = "9" * 5000  # beyond Python's int() limit of 4300 digits
REPO = "hostile/app"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = b"layer bytes " * 100
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Raw:
    """HTTP/1.1 over a raw socket to the server; and its log, read from a mark onwards."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.mark = 0

    def send(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as s:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), headers, body

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        fields = {"Host": self.server.addr, "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        return self.send(head.encode("latin-1") + b"\r\n" + body)

    def new_log(self) -> list[str]:
        """Log lines written since the last call (after a moment for the server to write them)."""
        time.sleep(0.3)
        text = self.server.log_path.read_text(errors="replace")
        lines, self.mark = text[self.mark :].splitlines(), len(text)
        return lines


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("hostile"), {})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def raw(server: Server) -> Raw:
    r = Raw(server)
    r.new_log()
    return r


def push_blob(raw: Raw, data: bytes) -> None:
    status, _, body = raw.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest(data)}", body=data)
    assert status == 201, body


def push_manifest(raw: Raw, doc: dict, tag: str) -> bytes:  # type: ignore[type-arg]
    body = json.dumps(doc).encode()  # ensure_ascii: a lone surrogate travels as the escape \ud800
    status, _, reply = raw.request("PUT", f"/v2/{REPO}/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, body)
    assert status == 201, reply
    return body


def store_raw(server: Server, body: bytes, tag: str) -> None:
    """Write a manifest into the server's storage without the push path's checks."""
    import asyncio

    from storage.filesystem import FilesystemDriver
    from storage.references import Digest
    from storage.store import RegistryStore

    store = RegistryStore(FilesystemDriver(str(server.workdir / "data")))
    asyncio.run(store.put_manifest(REPO, body, OCI_MANIFEST, Digest.of(body), [tag], None, None))


def image(config: bytes, **extra: object) -> dict:  # type: ignore[type-arg]
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(LAYER),
                    "size": len(LAYER)}],
        **extra,
    }


def assert_spec_error(status: int, body: bytes, code: str) -> None:
    assert 400 <= status < 500, (status, body[:300])
    assert json.loads(body)["errors"][0]["code"] == code


def assert_quiet(lines: list[str], most: int) -> None:
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines
    assert len(lines) <= most, lines
    # Short, except the access log, which records the request target as sent (bounded by the parser).
    assert all(len(line) < 600 for line in lines if "trustreg.access" not in line), lines


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}"])
def test_huge_numbers_in_range(raw: Raw, header: str) -> None:
    push_blob(raw, LAYER)
    raw.new_log()
    status, headers, body = raw.request("GET", f"/v2/{REPO}/blobs/{digest(LAYER)}", {"Range": header})
    if header.startswith(f"bytes={HUGE}"):
        assert_spec_error(status, body, "RANGE_INVALID")
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(LAYER)}"
    else:  # from 0 to "the end", or the last <more than everything> bytes: the whole blob
        assert status == 206 and body == LAYER
    assert_quiet(raw.new_log(), 1)


@pytest.mark.parametrize("content_range", [f"{HUGE}-1", f"bytes={HUGE}-{4999 * 9}"])
def test_huge_numbers_in_content_range(raw: Raw, content_range: str) -> None:
    status, headers, _ = raw.request("POST", f"/v2/{REPO}/blobs/uploads/")
    location = headers["Location"]
    raw.new_log()
    status, _, body = raw.request("PATCH", location, {"Content-Range": content_range}, b"x")
    assert status == 416
    assert_spec_error(status, body, "BLOB_UPLOAD_INVALID")
    assert_quiet(raw.new_log(), 1)
    assert raw.request("GET", location)[1]["Range"] == "0-0"  # nothing was appended


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v2/ HTTP/1.1 trailing\r\nHost: x\r\n\r\n",  # malformed request line
        b"GET /v2/\x01 HTTP/1.1\r\nHost: x\r\n\r\n",  # control byte in the target
        b"GET /v2/ HTTP/7.3\r\nHost: x\r\n\r\n",  # unknown version
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",  # header without a colon
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",  # header line too long
        f"PUT /v2/{REPO}/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: {HUGE}\r\n\r\n".encode(),
        f"PUT /v2/{REPO}/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".encode(),
        f"PATCH /v2/{REPO}/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"f" * 5000 + b"\r\nabc\r\n0\r\n\r\n",  # chunk size beyond any number
        f"PATCH /v2/{REPO}/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"zz\r\nabc\r\n0\r\n\r\n",  # chunk size not hex
        f"PATCH /v2/{REPO}/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",  # smuggling: both framings
        f"PUT /v2/{REPO}/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n".encode()
        + b"Content-Length: 4\r\n\r\nabcd",  # two lengths
        b"GET /v2/\xff\xfe/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",  # bytes that are not UTF-8 in the path
    ],
)
def test_malformed_http_gets_400_and_one_short_line(raw: Raw, request_bytes: bytes) -> None:
    status, _, _ = raw.send(request_bytes)
    assert status == 400
    assert_quiet(raw.new_log(), 1)


def test_malformed_requests_cannot_flood_the_log(raw: Raw) -> None:
    for _ in range(20):
        assert raw.send(b"GET /v2/ HTTP/1.1 x\r\nHost: x\r\n\r\n")[0] == 400
    lines = raw.new_log()
    assert_quiet(lines, 20)
    assert all("malformed request" in line for line in lines), lines


def test_lone_surrogates_in_annotations_render(raw: Raw) -> None:
    push_blob(raw, CONFIG)
    push_blob(raw, LAYER)
    doc = image(CONFIG, annotations={"note\ud800": "\ud800 lone", "org.opencontainers.image.title": "\udfff"})
    doc["layers"][0]["annotations"] = {"x": "\ud800"}
    manifest = json.dumps(doc).encode()  # ensure_ascii: a lone surrogate travels as the escape \ud800
    status, _, reply = raw.request("PUT", f"/v2/{REPO}/manifests/surrogate", {"Content-Type": OCI_MANIFEST}, manifest)
    assert status == 400 and b"MANIFEST_INVALID" in reply  # Go would read it otherwise (trust.strictjson)
    store_raw(raw.server, manifest, "surrogate")  # stored before that rule: must still render
    raw.new_log()
    for path in (f"/ui/repositories/{REPO}/manifests/{digest(manifest)}", f"/ui/repositories/{REPO}",
                 f"/api/v1/repositories/{REPO}/manifests/{digest(manifest)}", f"/api/v1/repositories/{REPO}/tags"):
        status, headers, body = raw.request("GET", path)
        assert status == 200, (path, body[:300])
        if path.startswith("/ui/"):
            body.decode("utf-8")  # valid UTF-8
    status, _, body = raw.request("GET", f"/ui/repositories/{REPO}/manifests/{digest(manifest)}")
    assert b"\\ud800 lone" in body
    assert_quiet(raw.new_log(), 5)


@pytest.mark.parametrize("nesting", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_deeply_nested_config_blob_does_not_break_the_api_or_ui(raw: Raw, nesting: bytes) -> None:
    """Blobs are any bytes: a config blob nested far beyond Python's recursion limit, referenced by
    a valid manifest, is read by the inspection API and UI (platform of the image)."""
    push_blob(raw, LAYER)
    push_blob(raw, nesting)
    manifest = push_manifest(raw, image(nesting), "deep")
    raw.new_log()
    for path in (f"/api/v1/repositories/{REPO}/tags", f"/api/v1/repositories/{REPO}/tags/deep",
                 f"/api/v1/repositories/{REPO}/manifests/{digest(manifest)}", f"/ui/repositories/{REPO}",
                 f"/ui/repositories/{REPO}/manifests/{digest(manifest)}"):
        status, _, body = raw.request("GET", path)
        assert status == 200, (path, status, body[:300])
    assert_quiet(raw.new_log(), 5)


def test_huge_version_in_a_trust_metadata_path(raw: Raw) -> None:
    status, _, body = raw.request("GET", f"/v2/{raw.server.addr}/{REPO}/_trust/tuf/{HUGE}.root.json")
    assert status == 404, body[:300]
    assert json.loads(body)["errors"][0]["code"] == "METADATA_NOT_FOUND"
    assert_quiet(raw.new_log(), 1)
