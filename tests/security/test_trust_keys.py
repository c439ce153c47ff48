"""Issue 15 §4: the server-key endpoints must not mint keys for any reader.

`GET …/_trust/tuf/{timestamp,snapshot}.key` used to create a new encrypted key per call for anyone who
could read (anonymous in public projects) and any repository name. Now: reading returns an existing key
and never creates one; creating needs push on that repository and makes at most one key per role and
root version (asking again returns the same key until a root is published). notary-server 0.7.0 makes
a new key on every GET before a root exists and on every POST; the differential suite names this.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.handlers.common import DRIVER
from tests.auth.conftest import PASSWORDS, auth_config, basic, bearer, write_htpasswd
from tests.security.test_trust_gun import form
from tests.trust.factory import Signer, SyntheticRepo
from trust.keys import PublicKey
from trust.signing import sign_signed
from trust.timeutil import utcnow

ROLES = ("timestamp", "snapshot")


@pytest.fixture(params=["basic", "token"])
async def setup(request: pytest.FixtureRequest, registry, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    config = auth_config(write_htpasswd(tmp_path / "htpasswd", PASSWORDS), token=request.param == "token")
    client = await registry(config)
    return {"client": client, "mode": request.param}


async def headers_for(setup: dict[str, Any], user: str | None, gun: str, actions: str = "pull,push") -> dict[str, str]:
    if user is None:
        return {}
    if setup["mode"] == "basic":
        return basic(user)
    params = {"service": "trustreg-test", "scope": f"repository:{gun}:{actions}"}
    resp = await setup["client"].get("/auth/token", params=params, headers=basic(user))
    assert resp.status == 200
    return bearer((await resp.json())["token"])


async def key_files(client) -> list[str]:  # type: ignore[no-untyped-def]
    return [k async for k in client.app[DRIVER].walk("trust") if k.endswith(".pem")]


async def test_readers_cannot_create_keys(setup: dict[str, Any]) -> None:
    client = setup["client"]
    for repository, user in (("pub/app", None), ("pub/app", "carol"), ("secure/app", "carol")):
        gun = f"127.0.0.1:{client.server.port}/{repository}"
        headers = await headers_for(setup, user, gun, "pull")
        for _ in range(31):
            for role in ROLES:
                resp = await client.get(f"/v2/{gun}/_trust/tuf/{role}.key", headers=headers)
                assert resp.status in (401, 403), (repository, user, resp.status)
    assert await key_files(client) == []


async def test_pull_only_token_of_a_push_account_cannot_create_keys(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Creating a key follows what the request's credential grants (the token's scope), not the account."""
    client = await registry(auth_config(write_htpasswd(tmp_path / "htpasswd", PASSWORDS), token=True))
    setup = {"client": client, "mode": "token"}
    gun = f"127.0.0.1:{client.server.port}/secure/app"
    headers = await headers_for(setup, "alice", gun, "pull")  # alice may push; her token says pull
    for role in ROLES:
        resp = await client.get(f"/v2/{gun}/_trust/tuf/{role}.key", headers=headers)
        assert resp.status == 403, (role, resp.status)
    assert await key_files(client) == []


async def test_creation_is_bounded_per_role_and_root_version(setup: dict[str, Any]) -> None:
    client = setup["client"]
    gun = f"127.0.0.1:{client.server.port}/secure/app"
    alice = await headers_for(setup, "alice", gun, "*")
    seen: dict[str, set[str]] = {role: set() for role in ROLES}
    for _ in range(31):
        for role in ROLES:
            for method in ("GET", "POST"):
                resp = await client.request(method, f"/v2/{gun}/_trust/tuf/{role}.key", headers=alice)
                assert resp.status == 200, await resp.text()
                seen[role].add(await resp.text())
    assert all(len(keys) == 1 for keys in seen.values()) and len(await key_files(client)) == 2
    # a reader now gets the existing key (no creation involved)
    carol = await headers_for(setup, "carol", gun, "pull")
    resp = await client.get(f"/v2/{gun}/_trust/tuf/timestamp.key", headers=carol)
    assert resp.status == 200 and await resp.text() in seen["timestamp"]

    # publishing a root that uses them opens one more slot per role (a rotation), and no more
    repo = SyntheticRepo(gun, utcnow())
    for role in ROLES:
        (text,) = seen[role]
        setattr(repo, role, Signer(None, PublicKey.from_dict(json.loads(text))))  # type: ignore[arg-type]
    root = repo.sign_root(repo.root_signed())
    targets = sign_signed(repo.targets_signed({}), [repo.targets.pair])
    resp = await client.post(f"/v2/{gun}/_trust/tuf/", data=form({"root": root, "targets": targets}), headers=alice)
    assert resp.status == 200, await resp.text()
    rotated = {(await (await client.post(f"/v2/{gun}/_trust/tuf/snapshot.key", headers=alice)).text())
               for _ in range(10)}
    assert len(rotated) == 1 and rotated != seen["snapshot"]
    assert len(await key_files(client)) == 3
