"""Issue 15 §2: one name for one trust collection.

The attack: mallory has push only in project `sandbox`. `POST /v2/sandbox/secure/app/_trust/tuf/` with
`Host: sandbox` used to be authorized as repository `sandbox/secure/app` (mallory's) while the trust
server took `sandbox` for a server name and stored the collection of `secure/app`: an unsigned
`secure/app:v1` became pullable and the owner was locked out. Now one mapping decides both, so the
request is judged on `secure/app`, and a GUN of no server name of ours is refused before anything is
read or written. Run with Basic and with token auth (tokens asked for `sandbox/secure/app`, from the
normal host and from `Host: sandbox`).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest
from yarl import URL

from registry.handlers.common import DRIVER
from tests.auth.conftest import PASSWORDS, auth_config, basic, bearer, push_image, write_htpasswd
from tests.helpers import image_manifest
from tests.trust.factory import Signer, SyntheticRepo
from trust.keys import PublicKey
from trust.signing import sign_signed
from trust.timeutil import utcnow

TARGET = "secure/app"


def manifest_of(name: str) -> bytes:
    """The manifest `push_image` pushes for `name` (same config and layer)."""
    return image_manifest(f'{{"repo":"{name}"}}'.encode(), [f"layer of {name}".encode()])


@pytest.fixture(params=["basic", "token"])
async def setup(request: pytest.FixtureRequest, registry, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {**PASSWORDS, "mallory": "mallory-pw"})
    config = auth_config(htpasswd, token=request.param == "token")
    config["projects"]["secure"]["content_trust"] = {"enforce": True}
    config["projects"]["sandbox"] = {"members": {"mallory": ["pull", "push", "delete"]}}
    client = await registry(config)
    return {"client": client, "mode": request.param}


async def credentials(setup: dict[str, Any], user: str, scope_name: str, host: str | None = None) -> dict[str, str]:
    """Headers for `user`: Basic, or a bearer token asked for `scope_name` (from `host` if given)."""
    password = "mallory-pw" if user == "mallory" else None
    if setup["mode"] == "basic":
        return basic(user, password)
    headers = {**basic(user, password), **({"Host": host} if host else {})}
    params = {"service": "trustreg-test", "scope": f"repository:{scope_name}:pull,push"}
    resp = await setup["client"].get("/auth/token", params=params, headers=headers)
    assert resp.status == 200, await resp.text()
    return bearer((await resp.json())["token"])


def form(parts: dict[str, bytes]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for role, body in parts.items():
        data.add_field("files", body, filename=role, content_type="application/octet-stream")
    return data


async def signed_collection(client, gun: str, headers: dict[str, str]) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """root+targets+snapshot for `gun` signing `v1` -> secure/app's manifest; the server's timestamp key
    if it hands one out, else one of our own (the publish must be refused either way)."""
    repo = SyntheticRepo(gun, utcnow())
    resp = await client.get(f"/v2/{gun}/_trust/tuf/timestamp.key", headers=headers)
    if resp.status == 200:
        repo.timestamp = Signer(None, PublicKey.from_dict(await resp.json(content_type=None)))  # type: ignore[arg-type]
    targets = sign_signed(repo.targets_signed({"v1": manifest_of(TARGET)}), [repo.targets.pair])
    data = repo.collection(targets)
    return {"root": data.root, "targets": data.targets, "snapshot": data.snapshot}


async def nothing_stored(client) -> bool:  # type: ignore[no-untyped-def]
    driver = client.app[DRIVER]
    return [await driver.list(f"trust/{name}") for name in (TARGET, f"sandbox/{TARGET}")] == [[], []]


@pytest.mark.parametrize("attack_host", ["sandbox", "SandBox"])
async def test_host_header_cannot_sign_another_project(setup: dict[str, Any], attack_host: str) -> None:
    """With `SandBox`, a token mode client also asks its token with that Host (names are case-insensitive)."""
    client, mode = setup["client"], setup["mode"]
    token_host = attack_host if attack_host != "sandbox" else None
    alice = await credentials(setup, "alice", TARGET)
    await push_image(client, TARGET, alice, tag="v1")
    assert (await client.get(f"/v2/{TARGET}/manifests/v1", headers=alice)).status == 412

    gun = f"sandbox/{TARGET}"
    mallory = await credentials(setup, "mallory", gun, host=token_host)
    if mode == "token":  # the scope may mean repository sandbox/secure/app or GUN sandbox + secure/app
        claims = jwt.decode(mallory["Authorization"].split()[1], options={"verify_signature": False})
        assert [a["name"] for a in claims["access"]] == [gun]  # only what mallory may push to
    attack = {**mallory, "Host": attack_host}
    parts = await signed_collection(client, gun, attack)
    resp = await client.post(f"/v2/{gun}/_trust/tuf/", data=form(parts), headers=attack)
    assert resp.status in (401, 403), await resp.text()
    # without the Host trick `sandbox` is no server name of ours: refused, nothing read or written
    resp = await client.post(f"/v2/{gun}/_trust/tuf/", data=form(parts), headers=mallory)
    assert resp.status == 400 and (await resp.json())["errors"][0]["code"] == "INVALID_GUN"
    assert await nothing_stored(client)
    assert (await client.get(f"/v2/{TARGET}/manifests/v1", headers=alice)).status == 412

    # the owner keeps control: alice signs v1 under the registry's own name and it becomes pullable
    owner_gun = f"127.0.0.1:{client.server.port}/{TARGET}"
    owner = await credentials(setup, "alice", owner_gun)
    parts = await signed_collection(client, owner_gun, owner)
    resp = await client.post(f"/v2/{owner_gun}/_trust/tuf/", data=form(parts), headers=owner)
    assert resp.status == 200, await resp.text()
    assert (await client.get(f"/v2/{TARGET}/manifests/v1", headers=alice)).status == 200


async def test_unmapped_gun_reads_and_writes_nothing(setup: dict[str, Any]) -> None:
    """GUNs naming no server of ours, or no valid repository, are INVALID_GUN for every endpoint, even
    for an admin: no key is created, nothing is stored."""
    client = setup["client"]
    for gun in ("evil.example.com/secure/app", "localhost/secure/app", "secure/app",
                f"127.0.0.1:{client.server.port}/Secure/App", f"127.0.0.1:{client.server.port}/a//b"):
        root = await credentials(setup, "root", gun)
        for method, path in (("GET", "timestamp.key"), ("POST", "snapshot.key"), ("GET", "root.json"),
                             ("DELETE", ""), ("POST", "")):
            resp = await client.request(method, f"/v2/{gun}/_trust/tuf/{path}", headers=root)
            assert resp.status == 400, (gun, method, path, resp.status)
            assert (await resp.json())["errors"][0]["code"] == "INVALID_GUN"
    assert await client.app[DRIVER].list("trust") == []


async def test_router_and_authorization_see_one_gun(setup: dict[str, Any]) -> None:
    """Encoded slashes make the router and the auth middleware split a path differently; the trust
    server refuses instead of acting on a GUN authorization did not judge."""
    client = setup["client"]
    host = f"127.0.0.1:{client.server.port}"
    alice = await credentials(setup, "alice", f"{host}/{TARGET}")
    for path in (f"/v2/{host}/{TARGET}%2F_trust%2Ftuf/x/_trust/tuf/timestamp.key",
                 f"/v2/{host}/{TARGET}%2F_trust%2Ftuf/x/_trust/tuf/"):
        for method in ("GET", "POST"):
            resp = await client.session.request(method, URL(f"http://{host}{path}", encoded=True), headers=alice)
            assert resp.status in (400, 401, 403, 404), (method, path, resp.status)
    assert await client.app[DRIVER].list("trust") == []
