"""Structured (JSON) logs a new operator can search: a refusal carries repository, reference, digest,
reason, principal and request id; the access log carries the principal; a reload logs what it changed
in enforcement."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.auth.conftest import PASSWORDS, auth_config, basic, write_htpasswd
from tests.e2e.conftest import Server
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest


def request(url: str, headers: dict[str, str], method: str = "GET", data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def record(server: Server, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first JSON log record `wanted` accepts (waiting up to 10 s for it)."""
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in map(json.loads, filter(None, server.log().splitlines())) if wanted(r)]
        if found or time.monotonic() > deadline:
            assert found, server.log()
            return found[0]
        time.sleep(0.1)


def test_refusal_access_and_reload_records(trustreg, tmp_path: Path) -> None:
    config = auth_config(write_htpasswd(tmp_path / "htpasswd", PASSWORDS))
    config["log"] = {"format": "json"}
    config["projects"]["secure"]["content_trust"] = {"enforce": True}
    server: Server = trustreg(config)
    alice = basic("alice", PASSWORDS["alice"])
    blob = b"{}"
    assert request(f"{server.url}/v2/secure/app/blobs/uploads/?digest={digest_of(blob)}", alice, "POST", blob) == 201
    body = image_manifest(blob, [])
    assert request(f"{server.url}/v2/secure/app/manifests/1", {**alice, "Content-Type": OCI_MANIFEST}, "PUT",
                   body) == 201
    assert request(f"{server.url}/v2/secure/app/manifests/1", {**alice, "X-Request-Id": "refused-7"}) == 412

    refusal = record(server, lambda r: r["message"].startswith("content trust refused"))
    assert {k: refusal[k] for k in ("repository", "reference", "digest", "reason", "principal", "request_id")} == {
        "repository": "secure/app", "reference": "1", "digest": digest_of(body),
        "reason": "no trust data: no trust data for secure/app", "principal": "alice", "request_id": "refused-7"}
    access = record(server, lambda r: r.get("request_id") == "refused-7" and r["logger"] == "trustreg.access")
    assert access["principal"] == "alice" and access["status"] == 412

    config["projects"]["secure"]["content_trust"] = {"enforce": False}
    config["projects"]["pub"]["content_trust"] = {"enforce": True, "signers": ["targets/releases"]}
    server.config_path.write_text(yaml.safe_dump({**config, "http": yaml.safe_load(
        server.config_path.read_text())["http"], "storage": {"filesystem": {"root": str(server.workdir / "data")}}}))
    server.proc.send_signal(signal.SIGHUP)
    record(server, lambda r: r["message"].startswith("configuration reloaded"))
    changes = [r["change"] for r in map(json.loads, server.log().splitlines()) if "change" in r]
    assert changes == ["project secure no longer enforced",
                       "project pub now enforced; accepts notary (signers: targets/releases)"]
