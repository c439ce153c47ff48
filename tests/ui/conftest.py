"""Fixtures for the UI/API tests: an enforced project whose tags the real notary CLI signs.

`signed_repo` pushes to `secure/app` (project `secure` enforces content trust):
- `signed`: signed by `targets` for its digest;
- `unsigned`: never signed;
- `moved`: signed, then re-pushed to another manifest (the signature names the old digest).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from tests.e2e.conftest import require
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest

REPO = "secure/app"
ENFORCED: dict[str, Any] = {"projects": {"secure": {"content_trust": {"enforce": True}}}}
PASSPHRASES = {
    "NOTARY_ROOT_PASSPHRASE": "ui-root", "NOTARY_TARGETS_PASSPHRASE": "ui-targets",
    "NOTARY_SNAPSHOT_PASSPHRASE": "ui-snapshot", "NOTARY_DELEGATION_PASSPHRASE": "ui-delegation",
}


class NotaryCLI:
    """The real notary CLI with a private trust dir, against `url` (http or https with `ca`)."""

    def __init__(self, url: str, workdir: Path, ca: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.url, self.dir, self.env = url, workdir, env or {}
        workdir.mkdir(parents=True, exist_ok=True)
        remote: dict[str, str] = {"url": url}
        if ca is not None:
            remote["root_ca"] = str(ca)
        (workdir / "config.json").write_text(json.dumps({"trust_dir": str(workdir / "trust"), "remote_server": remote}))

    def __call__(self, *args: str) -> str:
        result = subprocess.run(
            ["notary", "-c", str(self.dir / "config.json"), "-s", self.url, *args],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            env={**os.environ, **PASSPHRASES, **self.env},
        )
        assert result.returncode == 0, f"notary {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def sign(self, gun: str, tags: dict[str, tuple[str, int]], init: bool = False) -> None:
        """`tags`: tag -> (digest, size), all added to `targets` and published at once."""
        if init:
            self("init", gun)
        for tag, (digest, size) in tags.items():
            self("addhash", gun, tag, str(size), "--sha256", digest.removeprefix("sha256:"))
        self("publish", gun)


async def push(client: TestClient, name: str, tag: str, seed: str, headers: dict[str, str] | None = None,
               **extra: Any) -> tuple[str, bytes]:
    """Push a one-layer image (content derived from `seed`); returns (digest, manifest bytes)."""
    headers = headers or {}
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer {seed}".encode()
    for blob in (config, layer):
        resp = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest_of(blob)}", data=blob, headers=headers)
        assert resp.status == 201, await resp.text()
    body = image_manifest(config, [layer], **extra)
    media_type = extra.get("mediaType", OCI_MANIFEST)
    resp = await client.put(f"/v2/{name}/manifests/{tag}", data=body, headers={**headers, "Content-Type": media_type})
    assert resp.status == 201, await resp.text()
    return digest_of(body), body


@dataclass
class SignedRepo:
    client: Any  # a TestClient, or an aiohttp ClientSession with a base_url
    url: str
    digests: dict[str, str]  # tag -> current digest
    sizes: dict[str, int]
    moved_from: str  # the digest `moved` was signed for


def notary_login(user: str, password: str) -> dict[str, str]:
    """The environment that makes the notary CLI send Basic credentials."""
    return {"NOTARY_AUTH": base64.b64encode(f"{user}:{password}".encode()).decode()}


def url_of(client: TestClient) -> str:
    return f"http://{client.server.host}:{client.server.port}"


async def make_signed_repo(client: Any, url: str, workdir: Path, headers: dict[str, str] | None = None,
                           notary_env: dict[str, str] | None = None, ca: Path | None = None) -> SignedRepo:
    """Push `signed`, `unsigned` and `moved` to REPO at `url`, sign two with notary, then move `moved`."""
    require("notary")
    digests, sizes = {}, {}
    for tag in ("signed", "unsigned", "moved"):
        digest, body = await push(client, REPO, tag, tag, headers)
        digests[tag], sizes[tag] = digest, len(body)
    notary = NotaryCLI(url, workdir, ca=ca, env=notary_env)
    gun = f"{urlsplit(url).netloc}/{REPO}"
    signing = {t: (digests[t], sizes[t]) for t in ("signed", "moved")}
    await asyncio.to_thread(notary.sign, gun, signing, True)
    moved_from = digests["moved"]
    digests["moved"], body = await push(client, REPO, "moved", "moved again", headers)
    sizes["moved"] = len(body)
    return SignedRepo(client, url, digests, sizes, moved_from)


@pytest.fixture
async def signed_repo(registry, tmp_path: Path) -> SignedRepo:
    client = await registry(ENFORCED)
    return await make_signed_repo(client, url_of(client), tmp_path / "notary")
