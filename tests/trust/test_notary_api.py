"""The Notary HTTP API of the registry app (aiohttp test client), driven with the real history."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from config.loader import ConfigError, parse_settings
from registry.app import create_app
from registry.auth.scope import ServerNames, gun_repository
from registry.notary_api import NOTARY
from storage.filesystem import FilesystemDriver
from tests.trust.factory import EXPECTED, GUN, history
from tests.trust.test_server import server_root
from trust.collection import verify_trust_data
from trust.timeutil import utcnow

T = f"/v2/{GUN}/_trust/tuf"
CONFIG = {"http": {"addr": "127.0.0.1:5000"}}


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRUSTREG_TRUST_PASSPHRASE", "api-test")
    app = create_app(parse_settings(CONFIG), driver=FilesystemDriver(str(tmp_path / "data")))
    return await aiohttp_client(app)


def multipart(parts: list[tuple[str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, data in parts:
        form.add_field("files", data, filename=name, content_type="application/octet-stream")
    return form


async def publish(client: TestClient, parts: list[tuple[str, bytes]]) -> aiohttp.ClientResponse:
    return await client.post(f"{T}/", data=multipart(parts))


async def notary_error(resp: aiohttp.ClientResponse, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    body = await resp.json()
    assert body["errors"][0]["code"] == code
    return body["errors"][0]


class _ServiceOverHttp:
    """What tests.trust.test_server.server_root needs from a service: get_key over HTTP."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def get_key(self, repo: str, role: str) -> dict:  # type: ignore[type-arg]
        resp = await self.client.get(f"{T}/{role}.key")
        assert resp.status == 200
        return json.loads(await resp.read())


async def test_publish_and_read_like_a_client(client: TestClient) -> None:
    resp = await client.get(f"{T}/root.json")
    err = await notary_error(resp, 404, "METADATA_NOT_FOUND")
    assert err == {
        "code": "METADATA_NOT_FOUND",
        "message": "You have requested metadata that does not exist.",
        "detail": {},
    }
    keys = _ServiceOverHttp(client)
    resp = await publish(client, [("root", await server_root(keys, 1)), ("targets", history("targets", 2))])  # type: ignore[arg-type]
    assert resp.status == 200 and await resp.read() == b""
    resp = await publish(client, [("targets", history("targets", 3))])
    assert resp.status == 200
    resp = await publish(client, [("targets/releases.json", history("targets/releases", 1))])
    assert resp.status == 200

    # the read path of a client: timestamp -> snapshot.<sha> -> targets.<sha> -> delegation.<sha>
    resp = await client.get(f"{T}/timestamp.json")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300, s-maxage=300, must-revalidate"
    assert resp.headers["Last-Modified"].endswith(" UTC")
    timestamp = json.loads(await resp.read())
    snap_sha = base64.b64decode(timestamp["signed"]["meta"]["snapshot"]["hashes"]["sha256"]).hex()
    resp = await client.get(f"{T}/snapshot.{snap_sha}.json")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "public, max-age=2592000, s-maxage=2592000"
    snapshot = await resp.read()
    assert hashlib.sha256(snapshot).hexdigest() == snap_sha
    sha = hashlib.sha256(history("targets/releases", 1)).hexdigest()
    resp = await client.get(f"{T}/targets/releases.{sha.upper()}.json")
    assert await resp.read() == history("targets/releases", 1)
    resp = await client.get(f"{T}/2.targets.json")
    assert await resp.read() == history("targets", 2)
    resp = await client.get(f"{T}/02.targets.json")
    assert resp.status == 200
    await notary_error(await client.get(f"{T}/0.root.json"), 404, "METADATA_NOT_FOUND")
    await notary_error(await client.get(f"{T}/targets.{sha}.json"), 404, "METADATA_NOT_FOUND")

    # what the gate would see
    gun, data = await client.app[NOTARY].load("library/alpine")
    assert gun == GUN
    result = verify_trust_data(data, GUN, utcnow())
    assert set(result.targets) == set(EXPECTED["targets"]["targets"]) | set(EXPECTED["targets"]["targets/releases"])

    resp = await client.delete(f"{T}/")
    assert resp.status == 200 and await resp.read() == b""
    assert (await client.delete(f"{T}/")).status == 200
    await notary_error(await client.get(f"{T}/root.json"), 404, "METADATA_NOT_FOUND")


async def test_key_endpoints(client: TestClient) -> None:
    resp = await client.get(f"{T}/timestamp.key")
    assert resp.status == 200
    raw = await resp.read()
    assert raw.startswith(b'{"keytype":"ecdsa","keyval":{"public":"') and raw.endswith(b'","private":null}}')
    assert (await client.post(f"{T}/snapshot.key")).status == 200
    await notary_error(await client.get(f"{T}/targets.key"), 404, "METADATA_NOT_FOUND")
    await notary_error(await client.post(f"{T}/root.key"), 404, "METADATA_NOT_FOUND")


async def test_upload_errors(client: TestClient) -> None:
    await notary_error(await client.post(f"{T}/", data=b"{}"), 400, "MALFORMED_UPLOAD")
    err = await notary_error(await publish(client, [("bogus", b"{}")]), 400, "INVALID_ROLE")
    assert err["detail"] == "bogus"
    await notary_error(await publish(client, [("targets", b"nope")]), 400, "MALFORMED_JSON")
    err = await notary_error(await publish(client, [("targets", history("targets", 2))]), 400, "INVALID_UPDATE")
    assert err["detail"]["Name"] == "ErrValidation"


async def test_unknown_paths_and_gun(client: TestClient) -> None:
    for method, path in [
        ("HEAD", f"{T}/root.json"),
        ("PUT", f"{T}/root.json"),
        ("GET", f"{T}/"),
        ("GET", f"{T}/root.JSON"),
        ("GET", f"/v2/{GUN}/_trust/other"),
    ]:
        resp = await client.request(method, path)
        assert resp.status == 404, (method, path)
    err = await notary_error(await client.get("/v2/library/x/_trust/tuf/root.json"), 400, "INVALID_GUN")
    assert "library/x" in err["detail"]
    resp = await client.get("/_notary_server/health")
    assert resp.status == 200 and await resp.json() == {}
    assert (await client.get("/v2/")).status == 200


def test_passphrase_is_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRUSTREG_TRUST_PASSPHRASE", raising=False)
    with pytest.raises(ConfigError, match="TRUSTREG_TRUST_PASSPHRASE is not set"):
        create_app(parse_settings(CONFIG), driver=FilesystemDriver(str(tmp_path)))
    dev = {**CONFIG, "trust": {"keys": {"insecure_dev_passphrase": True}}}
    assert create_app(parse_settings(dev), driver=FilesystemDriver(str(tmp_path)))
    off = {**CONFIG, "trust": {"enabled": False}}
    assert create_app(parse_settings(off), driver=FilesystemDriver(str(tmp_path)))


def test_gun_mapping() -> None:
    names = ServerNames(("registry.example.com", "localhost:5000"))
    assert gun_repository("registry.example.com/secure/alpine", names.accepted("x:1")) == "secure/alpine"
    assert gun_repository("Registry.Example.com/a", names.accepted("x:1")) == "a"
    for gun in ("other.example.com/a", "library/alpine", "registry.example.com/", "registry.example.com/A",
                "x:1/a"):
        assert gun_repository(gun, names.accepted("x:1")) is None
    # Without configured names, the host:port the request came in on is accepted too; nothing else.
    loose = ServerNames(names.names, from_host=True)
    assert gun_repository("127.0.0.1:9999/a/b", loose.accepted("127.0.0.1:9999")) == "a/b"
    assert gun_repository("localhost:5000/a", loose.accepted("127.0.0.1:9999")) == "a"
    for gun in ("127.0.0.1:9999/a/b", "library/alpine", "evil.example.com/a"):
        assert gun_repository(gun, loose.accepted("127.0.0.1:1234")) is None
