"""Hostile input, property-based: everything a client controls is fuzzed with hypothesis against a real
server (raw HTTP). Every malformed input gets a 4xx with the spec's JSON error body: never a 5xx, never
a traceback, never a file written outside the storage root."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.check import check_storage
from storage.filesystem import FilesystemDriver
from tests.helpers import OCI_INDEX, OCI_MANIFEST, digest_of, image_manifest
from tests.reliability.server import Reply, ThreadedServer

FUZZ = settings(max_examples=int(os.environ.get("TRUSTREG_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REPO = "fuzz/app"
LAYER = b"0123456789" * 100
CONFIG = b'{"fuzz":true}'


class Target:
    """The server under attack, where its storage is, and what lies around it."""

    def __init__(self, server: ThreadedServer, outer: Path) -> None:
        self.server = server
        self.outer = outer
        self.baseline = self.outside_root()

    def outside_root(self) -> set[str]:
        """Every path under the temp dir except the storage root's contents."""
        found = set()
        root = str(self.server.root)
        for dirpath, dirs, files in os.walk(self.outer):
            if dirpath == root or dirpath.startswith(root + os.sep):
                dirs[:] = []
                continue
            found.update(os.path.join(dirpath, n) for n in dirs + files)
        return found

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        reply = self.server.request(method, path, body, headers)
        check(reply)
        assert self.outside_root() == self.baseline
        return reply


def check(reply: Reply) -> None:
    """No 5xx; every error is the spec's JSON body without a traceback."""
    assert reply.status < 500, (reply.method, reply.status, reply.body[:500])
    assert b"Traceback" not in reply.body
    if reply.status >= 400 and reply.method != "HEAD":
        doc = json.loads(reply.body)
        assert isinstance(doc["errors"], list) and doc["errors"], doc
        for err in doc["errors"]:
            assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str), err


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    outer = tmp_path_factory.mktemp("hostile")
    (outer / "neighbour").write_text("must stay alone")
    with ThreadedServer(outer / "srv" / "data") as server:
        t = Target(server, outer)
        for blob in (CONFIG, LAYER):
            t.send("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest_of(blob)}", blob)
        t.send("PUT", f"/v2/{REPO}/manifests/v1", image_manifest(CONFIG, [LAYER]), {"Content-Type": OCI_MANIFEST})
        yield t
        report = server.run(check_storage(FilesystemDriver(str(server.root))))
        assert [str(p) for p in report.problems] == []


# --- strategies -----------------------------------------------------------------------------------
hostile_words = st.sampled_from([
    "..", ".", "../..", "a/../../..", "%2e%2e", "%2E%2E/%2e%2e", "_trust", "_layers", "a//b", "/", "", " ",
    "A", "a" * 300, "\x00", "%00", "\\", "..\\..", "sha256:", "sha256:..", "~", "a/_manifests", ".tmp-x",
    "sha256:" + "0" * 64, "sha512:" + "f" * 128, "md5:abc", "SHA256:" + "a" * 64, "🐳", "%ff%fe",
])
texts = st.one_of(hostile_words, st.text(max_size=60), st.from_regex(r"[a-z0-9._/-]{0,40}", fullmatch=True))
digests = st.one_of(
    hostile_words,
    st.text(max_size=80),
    st.builds(lambda a, h: f"{a}:{h}", st.sampled_from(["sha256", "sha512", "sha384", "", "blake3"]),
              st.text(alphabet="0123456789abcdefABCDEF=_-+.", max_size=130)),
)


def q(text: str, safe: str = "/") -> str:
    return quote(text, safe=safe)


# --- paths: repository names, references, digests ------------------------------------------------
@FUZZ
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "PATCH", "POST"]),
    kind=st.sampled_from(["manifests", "blobs", "tags/list", "referrers", "blobs/uploads", "_trust/tuf"]),
    name=texts, ref=st.one_of(texts, digests), raw=st.booleans(),
)
def test_names_and_references(target: Target, method: str, kind: str, name: str, ref: str, raw: bool) -> None:
    encode = (lambda s: q(s, safe="/%:")) if raw else q  # raw: let the client's own escapes through
    path = f"/v2/{encode(name)}/{kind}" + ("" if kind == "tags/list" else f"/{encode(ref)}")
    body = b"{}" if method in ("PUT", "PATCH", "POST") else None
    target.send(method, path, body, {"Content-Type": OCI_MANIFEST} if method == "PUT" else None)


@FUZZ
@given(digest=digests, body=st.binary(max_size=200))
def test_upload_and_blob_digests(target: Target, digest: str, body: bytes) -> None:
    target.send("POST", f"/v2/{REPO}/blobs/uploads/?{urlencode({'digest': digest})}", body)
    target.send("GET", f"/v2/{REPO}/blobs/{q(digest, safe=':')}")
    start = target.send("POST", f"/v2/{REPO}/blobs/uploads/")
    location = start.headers["Location"]
    target.send("PUT", f"{location}?{urlencode({'digest': digest})}", body)


# --- headers: Range and Content-Range -------------------------------------------------------------
ranges = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), st.integers(0, 5000).map(str)),
              st.one_of(st.just(""), st.integers(0, 5000).map(str))),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(-10, 10**30), st.integers(-10, 10**30)),
    st.from_regex(r"bytes=[0-9,\- ]{0,30}", fullmatch=True),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


@FUZZ
@given(header=ranges, method=st.sampled_from(["GET", "HEAD"]))
def test_range_requests(target: Target, header: str, method: str) -> None:
    reply = target.send(method, f"/v2/{REPO}/blobs/{digest_of(LAYER)}", None, {"Range": header})
    assert reply.status in (200, 206, 416), reply.status
    if reply.status == 206 and method == "GET":
        unit, _, spec = reply.headers["Content-Range"].partition(" ")
        first, last = (int(x) for x in spec.split("/")[0].split("-"))
        assert unit == "bytes" and reply.body == LAYER[first : last + 1]
    elif reply.status == 200 and method == "GET":
        assert reply.body == LAYER


content_ranges = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", st.integers(-5, 300), st.integers(-5, 300)),
    st.builds(lambda a, b: f"bytes {a}-{b}/*", st.integers(0, 10**25), st.integers(0, 10**25)),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


@FUZZ
@given(header=content_ranges, body=st.binary(max_size=300), method=st.sampled_from(["PATCH", "PUT"]))
def test_content_range_on_upload_chunks(target: Target, header: str, body: bytes, method: str) -> None:
    location = target.send("POST", f"/v2/{REPO}/blobs/uploads/").headers["Location"]
    target.send("PATCH", location, b"first", {"Content-Range": "0-4"})
    suffix = f"?digest={digest_of(b'first' + body)}" if method == "PUT" else ""
    reply = target.send(method, location + suffix, body, {"Content-Range": header})
    status = target.send("GET", location) if reply.status != 201 else None
    if reply.status == 202:
        assert reply.headers["Range"] == f"0-{4 + len(body)}"
    if status is not None and status.status == 204:  # a refused chunk left the session as it was
        assert status.headers["Range"] in ("0-4", f"0-{4 + len(body)}")


# --- query parameters -----------------------------------------------------------------------------
params = st.dictionaries(st.sampled_from(["n", "last", "mount", "from", "digest", "tag", "artifactType"]),
                         st.one_of(texts, st.integers(-10**20, 10**20).map(str)), max_size=4)


@FUZZ
@given(query=params, endpoint=st.sampled_from([
    ("GET", f"/v2/{REPO}/tags/list"), ("GET", "/v2/_catalog"), ("POST", f"/v2/{REPO}/blobs/uploads/"),
    ("POST", "/v2/other/repo/blobs/uploads/"), ("GET", f"/v2/{REPO}/referrers/sha256:{'a' * 64}"),
]))
def test_query_parameters(target: Target, query: dict[str, str], endpoint: tuple[str, str]) -> None:
    method, path = endpoint
    reply = target.send(method, f"{path}?{urlencode(query)}", b"" if method == "POST" else None)
    if reply.status == 200 and "tags/list" in path:
        tags = reply.json()["tags"]
        assert tags == sorted(tags)


# --- manifest bodies ------------------------------------------------------------------------------
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**40), 10**40), st.floats(allow_nan=False),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)
manifest_keys = ["schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "annotations",
                 "artifactType", "blobs"]


def valid_manifest() -> dict[str, Any]:
    return json.loads(image_manifest(CONFIG, [LAYER]))


def deep(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(manifest_keys), json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
    st.tuples(st.sampled_from(manifest_keys), json_values).map(
        lambda kv: json.dumps({**valid_manifest(), kv[0]: kv[1]}).encode()),
    st.tuples(st.sampled_from(["config", "layers"]), st.sampled_from(["digest", "size", "mediaType"]), json_values).map(
        lambda t: json.dumps(_set_descriptor(valid_manifest(), *t)).encode()),
    st.tuples(st.integers(1, 200_000), st.sampled_from(["array", "object"])).map(lambda t: deep(*t)),
    st.integers(1, 5000).map(lambda n: b'{"schemaVersion": ' + b"9" * n + b"}"),
    st.binary(max_size=300),
)


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def test_malformed_http_is_refused_by_the_parser(target: Target) -> None:
    """Requests that are not HTTP (control characters in a header) never reach the app: aiohttp's parser
    answers a plain 400, with no traceback."""
    reply = target.server.request("PUT", f"/v2/{REPO}/manifests/x", b"{}", {"Content-Type": "\x08"})
    assert reply.status == 400 and b"Traceback" not in reply.body


def _set_descriptor(doc: dict[str, Any], where: str, key: str, value: Any) -> dict[str, Any]:
    (doc["config"] if where == "config" else doc["layers"][0])[key] = value
    return doc


@FUZZ
@given(body=bodies, content_type=st.one_of(st.sampled_from([OCI_MANIFEST, OCI_INDEX, "application/json", "",
       "application/vnd.docker.distribution.manifest.v1+prettyjws", "text/plain; charset=x"]), header_values),
       tag=st.sampled_from(["fuzzed", "v1"]))
def test_manifest_bodies(target: Target, body: bytes, content_type: str, tag: str) -> None:
    reply = target.send("PUT", f"/v2/{REPO}/manifests/{tag}", body, {"Content-Type": content_type})
    if reply.status == 201:  # accepted: it is served back byte for byte
        got = target.send("GET", f"/v2/{REPO}/manifests/{reply.headers['Docker-Content-Digest']}")
        assert got.body == body


def test_manifest_size_limit(target: Target) -> None:
    body = json.dumps({**valid_manifest(), "annotations": {"pad": "x" * (4 * 1024 * 1024)}}).encode()
    reply = target.send("PUT", f"/v2/{REPO}/manifests/big", body, {"Content-Type": OCI_MANIFEST})
    assert reply.status == 413 and reply.json()["errors"][0]["code"] == "SIZE_INVALID"


# --- trust metadata uploads -----------------------------------------------------------------------
def multipart_body(parts: list[tuple[str | None, bytes]], boundary: str, closing: bool) -> bytes:
    out = b""
    for filename, data in parts:
        disposition = 'form-data; name="files"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode("utf-8", "replace") + data + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if closing else b"")


trust_part_data = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"signed": json_values, "signatures": json_values}).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 100_000).map(lambda d: deep(d, "object")),
    st.binary(max_size=200),
)
filenames = st.one_of(st.sampled_from(["root", "targets", "snapshot", "timestamp", "targets/releases",
                                       "targets%2Freleases.json", "../../etc/passwd", "root.json", "", "a" * 300,
                                       "targets/../../x", "..%2F..%2Fx"]), st.text(max_size=30), st.none())


@FUZZ
@given(parts=st.lists(st.tuples(filenames, trust_part_data), max_size=5), closing=st.booleans(),
       content_type=st.sampled_from(["multipart/form-data; boundary=BOUNDARY", "multipart/form-data",
                                     "multipart/mixed; boundary=BOUNDARY", "application/json", ""]),
       gun=st.one_of(st.just("OWN"), texts))
def test_trust_uploads(target: Target, parts: list[tuple[str | None, bytes]], closing: bool, content_type: str,
                       gun: str) -> None:
    gun = f"127.0.0.1:{target.server.port}/fuzz/trust" if gun == "OWN" else q(gun, safe="/:")
    body = multipart_body(parts, "BOUNDARY", closing)
    target.send("POST", f"/v2/{gun}/_trust/tuf/", body, {"Content-Type": content_type} if content_type else None)
    target.send("GET", f"/v2/{gun}/_trust/tuf/root.json")


@FUZZ
@given(role=st.one_of(texts, st.sampled_from(["root", "timestamp", "snapshot", "targets"])),
       suffix=st.sampled_from([".json", ".key", ""]), prefix=st.one_of(st.just(""), st.integers(-1, 10**30).map(
           lambda n: f"{n}."), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: f".{h}")),
       method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_trust_reads(target: Target, role: str, suffix: str, prefix: str, method: str) -> None:
    gun = f"127.0.0.1:{target.server.port}/fuzz/trust"
    path = (f"{prefix}{role}{suffix}" if not prefix.startswith(".") else f"{role}{prefix}{suffix}")
    target.send(method, f"/v2/{gun}/_trust/tuf/{q(path)}", b"" if method != "GET" else None)


# --- tokens ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    from tests.auth.conftest import PASSWORDS, auth_config, write_htpasswd

    outer = tmp_path_factory.mktemp("tokens")
    config = auth_config(write_htpasswd(outer / "htpasswd", PASSWORDS), token=True)
    with ThreadedServer(outer / "srv" / "data", config) as server:
        yield Target(server, outer)


tokens = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=200),
    st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=60),
             min_size=1, max_size=4).map(".".join),
    st.just("eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290IiwiYWNjZXNzIjpbXX0."),  # alg=none
)


@FUZZ
@given(token=tokens, scheme=st.sampled_from(["Bearer", "bearer", "Basic", "Digest", ""]),
       path=st.sampled_from(["/v2/", f"/v2/secure/app/manifests/{uuid.uuid4().hex}", "/v2/_catalog",
                             "/auth/token?service=trustreg-test&scope=repository:secure/app:pull"]))
def test_garbage_tokens(token_target: Target, token: str, scheme: str, path: str) -> None:
    reply = token_target.send("GET", path, None, {"Authorization": f"{scheme} {token}".strip()})
    if path.startswith("/v2/secure"):
        assert reply.status == 401


# --- regressions: each of these was a 500 (or a bare non-JSON 416) --------------------------------
@pytest.mark.parametrize("header", ["bytes=", "", "bytes=0-1,3-4", "items=0-1", "bytes=-"])
def test_range_we_ignore_serves_the_whole_blob_not_a_bare_416(target: Target, header: str) -> None:
    reply = target.send("GET", f"/v2/{REPO}/blobs/{digest_of(LAYER)}", None, {"Range": header})
    assert reply.status == 200 and reply.body == LAYER


@pytest.mark.parametrize("header", [f"bytes={len(LAYER)}-", "bytes=-0"])
def test_unsatisfiable_range_is_a_json_416(target: Target, header: str) -> None:
    reply = target.send("GET", f"/v2/{REPO}/blobs/{digest_of(LAYER)}", None, {"Range": header})
    assert reply.status == 416 and reply.json()["errors"][0]["code"] == "RANGE_INVALID"
    assert reply.headers["Content-Range"] == f"bytes */{len(LAYER)}"


@pytest.mark.parametrize("kind", ["array", "object"])
def test_deeply_nested_manifest_is_invalid_not_a_crash(target: Target, kind: str) -> None:
    reply = target.send("PUT", f"/v2/{REPO}/manifests/deep", deep(100_000, kind), {"Content-Type": OCI_MANIFEST})
    assert reply.status == 400 and reply.json()["errors"][0]["code"] == "MANIFEST_INVALID"


def test_deeply_nested_trust_metadata_is_malformed(target: Target) -> None:
    gun = f"127.0.0.1:{target.server.port}/fuzz/trust"
    body = multipart_body([("root", deep(100_000, "object"))], "B", True)
    reply = target.send("POST", f"/v2/{gun}/_trust/tuf/", body, {"Content-Type": "multipart/form-data; boundary=B"})
    assert reply.status == 400


def test_invalid_multipart_part_header_is_malformed_upload(target: Target) -> None:
    gun = f"127.0.0.1:{target.server.port}/fuzz/trust"
    body = multipart_body([("\x1f\x01", b"{}")], "B", False)
    reply = target.send("POST", f"/v2/{gun}/_trust/tuf/", body, {"Content-Type": "multipart/form-data; boundary=B"})
    assert reply.status == 400 and reply.json()["errors"][0]["code"] == "MALFORMED_UPLOAD"
