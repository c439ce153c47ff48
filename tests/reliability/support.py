"""Helpers of the reliability tests: signing tags in Python (server-managed timestamp and snapshot),
pushing over HTTP with any aiohttp-like client, and asserting the spec's error format."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp

from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.trust.factory import Signer, expires
from trust.keys import PublicKey
from trust.metadata import MetaFile
from trust.signing import sign_signed
from trust.timeutil import utcnow

KeyGetter = Callable[[str], Awaitable[dict[str, Any]]]


class TrustPublisher:
    """The client side of one collection: a root certificate and a targets key held here, the
    timestamp and snapshot keys held by the server (as `notary init` does by default)."""

    def __init__(self, gun: str, now: datetime | None = None) -> None:
        self.gun = gun
        self.now = now or utcnow()
        self.root = Signer.root_cert(gun, self.now)
        self.targets_key = Signer.ecdsa()
        self.targets: dict[str, tuple[str, int]] = {}  # name -> (sha256 hex, length)
        self.version = 1  # of targets, last published
        self.initialised = False

    async def parts(self, get_key: KeyGetter, name: str, digest: str, length: int) -> list[tuple[str, bytes]]:
        """The parts of a publish that signs `name` -> (digest, length) (root included the first time)."""
        self.targets[name] = (digest.removeprefix("sha256:"), length)
        self.version += 1
        entries = {n: MetaFile(size, {"sha256": bytes.fromhex(h)}).to_dict() for n, (h, size) in self.targets.items()}
        targets = sign_signed(
            {"_type": "Targets", "delegations": {"keys": {}, "roles": []}, "expires": expires(self.now, 1095),
             "targets": entries, "version": self.version},
            [self.targets_key.pair],
        )
        if self.initialised:
            return [("targets", targets)]
        server = {role: PublicKey.from_dict(await get_key(role)) for role in ("timestamp", "snapshot")}
        keys = {self.root.keyid: self.root.public.to_dict(), self.targets_key.keyid: self.targets_key.public.to_dict()}
        keys.update({k.keyid: k.to_dict() for k in server.values()})
        roles = {"root": [self.root.keyid], "targets": [self.targets_key.keyid],
                 **{role: [k.keyid] for role, k in server.items()}}
        root = sign_signed(
            {"_type": "Root", "consistent_snapshot": False, "expires": expires(self.now, 3650), "keys": keys,
             "roles": {r: {"keyids": ids, "threshold": 1} for r, ids in roles.items()}, "version": 1},
            [self.root.pair],
        )
        return [("root", root), ("targets", targets)]

    def confirm(self) -> None:
        """The last publish succeeded."""
        self.initialised = True

    def rollback(self) -> None:
        """The last publish failed: its targets version may be reused."""
        self.version -= 1


def multipart(parts: list[tuple[str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, data in parts:
        form.add_field("files", data, filename=name, content_type="application/octet-stream")
    return form


async def publish_http(session: Any, base: str, publisher: TrustPublisher, name: str, digest: str, length: int) -> int:
    """Sign `name` over the Notary HTTP API at `base` (URL prefix or ""); returns the POST status."""
    tuf = f"{base}/v2/{publisher.gun}/_trust/tuf"

    async def get_key(role: str) -> dict[str, Any]:
        async with session.get(f"{tuf}/{role}.key") as resp:
            assert resp.status == 200, await resp.text()
            return json.loads(await resp.read())

    parts = await publisher.parts(get_key, name, digest, length)
    async with session.post(f"{tuf}/", data=multipart(parts)) as resp:
        status = resp.status
        await resp.read()
    if status == 200:
        publisher.confirm()
    else:
        publisher.rollback()
    return status


async def push_image(session: Any, base: str, repo: str, tag: str, seed: str) -> tuple[str, bytes]:
    """Push a one-layer image (monolithic blob uploads); returns (manifest digest, manifest bytes)."""
    config, layer = json.dumps({"seed": seed}).encode(), f"layer {seed}".encode() * 10
    for blob in (config, layer):
        async with session.post(f"{base}/v2/{repo}/blobs/uploads/?digest={digest_of(blob)}", data=blob) as resp:
            assert resp.status == 201, await resp.text()
    manifest = image_manifest(config, [layer])
    async with session.put(f"{base}/v2/{repo}/manifests/{tag}", data=manifest,
                           headers={"Content-Type": OCI_MANIFEST}) as resp:
        assert resp.status == 201, await resp.text()
    return digest_of(manifest), manifest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def assert_spec_error(resp: Any, *, statuses: tuple[int, ...] = ()) -> dict[str, Any]:
    """The response is a 4xx with a `{"errors":[{"code","message",...}]}` body (no traceback)."""
    body = await resp.read()
    assert 400 <= resp.status < 500, (resp.status, body[:500])
    if statuses:
        assert resp.status in statuses, (resp.status, body[:500])
    if resp.method == "HEAD":
        return {}
    assert b"Traceback" not in body
    doc = json.loads(body)
    assert isinstance(doc["errors"], list) and doc["errors"], doc
    for err in doc["errors"]:
        assert isinstance(err["code"], str) and err["code"], err
        assert isinstance(err["message"], str), err
    return doc
