"""The Docker token flow (`auth.token`) against a real loopback server."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.auth import AUTH
from registry.auth.scope import Access
from registry.auth.tokens import KEY_OBJECT, TokenAuthority
from registry.handlers.common import DRIVER
from storage.base import PathNotFoundError
from tests.auth.conftest import PASSWORDS, SERVICE, auth_config, basic, bearer, push_image, write_htpasswd


@pytest.fixture
async def client(registry, htpasswd_file: Path):
    return await registry(auth_config(htpasswd_file, token=True))


async def get_token(client, *scopes: str, user: str | None = None, service: str = SERVICE) -> str:
    params = [("service", service), *(("scope", s) for s in scopes)]
    resp = await client.get("/auth/token", params=params, headers=basic(user) if user else {})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    return body["token"]


def access_of(token: str) -> list[dict]:
    return jwt.decode(token, options={"verify_signature": False})["access"]


def realm(client) -> str:
    return f"http://{client.server.host}:{client.server.port}/auth/token"


async def test_anonymous_push_challenge(client) -> None:
    resp = await client.post("/v2/secure/alpine/blobs/uploads/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer realm="{realm(client)}",service="{SERVICE}",scope="repository:secure/alpine:pull,push"'
    )
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
    ping = await client.get("/v2/")
    assert ping.status == 401
    assert ping.headers["WWW-Authenticate"] == f'Bearer realm="{realm(client)}",service="{SERVICE}"'


async def test_configured_realm_is_announced(registry, htpasswd_file: Path) -> None:
    """Behind a proxy the request's own Host and scheme are not what clients use: `auth.token.realm`."""
    proxied = "https://registry.example.com/auth/token"
    client = await registry(auth_config(htpasswd_file, token=True, realm=proxied))
    ping = await client.get("/v2/")
    assert ping.status == 401
    assert ping.headers["WWW-Authenticate"] == f'Bearer realm="{proxied}",service="{SERVICE}"'


async def test_login_push_pull_with_tokens(client) -> None:
    token = await get_token(client, user="alice")  # what `docker login` does
    assert (await client.get("/v2/", headers=bearer(token))).status == 200
    token = await get_token(client, "repository:secure/alpine:pull,push", user="alice")
    assert access_of(token) == [{"type": "repository", "name": "secure/alpine", "actions": ["pull", "push"]}]
    digest = await push_image(client, "secure/alpine", bearer(token))
    resp = await client.get(f"/v2/secure/alpine/manifests/{digest}", headers=bearer(token))
    assert resp.status == 200


async def test_token_grants_intersection(client) -> None:
    await push_image(client, "secure/alpine", bearer(await get_token(client, "repository:secure/alpine:*",
                                                                     user="root")))
    token = await get_token(client, "repository:secure/alpine:pull,push,delete", user="carol")
    assert access_of(token) == [{"type": "repository", "name": "secure/alpine", "actions": ["pull"]}]
    assert (await client.get("/v2/secure/alpine/manifests/1.0", headers=bearer(token))).status == 200
    resp = await client.post("/v2/secure/alpine/blobs/uploads/", headers=bearer(token))
    assert resp.status == 403  # carol is known and her roles refuse: no point in another token
    assert (await resp.json())["errors"][0]["code"] == "DENIED"
    stranger = await get_token(client, "repository:secure/alpine:pull", user="stranger")
    assert access_of(stranger) == []
    assert (await client.get("/v2/secure/alpine/manifests/1.0", headers=bearer(stranger))).status == 403
    anonymous = await get_token(client, "repository:secure/alpine:pull")
    resp = await client.get("/v2/secure/alpine/manifests/1.0", headers=bearer(anonymous))
    assert resp.status == 401
    assert 'scope="repository:secure/alpine:pull"' in resp.headers["WWW-Authenticate"]


async def test_token_for_another_scope(client) -> None:
    token = await get_token(client, "repository:secure/one:pull,push", user="alice")
    resp = await client.post("/v2/secure/two/blobs/uploads/", headers=bearer(token))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].endswith(
        ',scope="repository:secure/two:pull,push",error="insufficient_scope"')
    pull_only = await get_token(client, "repository:secure/one:pull", user="alice")
    assert (await client.post("/v2/secure/one/blobs/uploads/", headers=bearer(pull_only))).status == 401
    assert (await client.post("/v2/secure/one/blobs/uploads/", headers=bearer(token))).status == 202


def _authority(client, **changes) -> TokenAuthority:
    real = client.app[AUTH].tokens
    key = changes.pop("key", None) or real._key
    return TokenAuthority(key, changes.get("issuer", real.issuer), changes.get("service", real.service), 300)


async def test_expired_token(client) -> None:
    authority = _authority(client)
    token = authority.issue("alice", [Access("repository", "secure/a", frozenset({"pull"}))],
                            now=time.time() - 3600)["token"]
    resp = await client.get("/v2/secure/a/tags/list", headers=bearer(token))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].endswith('error="invalid_token"')


async def test_token_for_another_service(client) -> None:
    resp = await client.get("/auth/token", params={"service": "elsewhere", "scope": "repository:secure/a:pull"},
                            headers=basic("alice"))
    assert resp.status == 400
    other = _authority(client, service="elsewhere")
    token = other.issue("alice", [Access("repository", "secure/a", frozenset({"pull"}))])["token"]
    assert (await client.get("/v2/secure/a/tags/list", headers=bearer(token))).status == 401
    other_issuer = _authority(client, issuer="someone-else")
    token = other_issuer.issue("alice", [Access("repository", "secure/a", frozenset({"pull"}))])["token"]
    assert (await client.get("/v2/secure/a/tags/list", headers=bearer(token))).status == 401


async def test_forged_token(client) -> None:
    forger = _authority(client, key=ec.generate_private_key(ec.SECP256R1()))
    token = forger.issue("root", [Access("repository", "secure/a", frozenset({"pull", "push"}))])["token"]
    resp = await client.get("/v2/secure/a/tags/list", headers=bearer(token))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


async def test_alg_none_token(client) -> None:
    now = int(time.time())
    claims = {"iss": "trustreg-test-issuer", "aud": SERVICE, "sub": "root", "iat": now, "exp": now + 300,
              "access": [{"type": "repository", "name": "secure/a", "actions": ["pull", "push"]}]}
    token = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert (await client.get("/v2/secure/a/tags/list", headers=bearer(token))).status == 401
    assert (await client.get("/v2/", headers=bearer("not.a.jwt"))).status == 401


async def test_wrong_password_gets_no_token(client) -> None:
    resp = await client.get("/auth/token", params={"service": SERVICE}, headers=basic("alice", "nope"))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="trustreg"'
    resp = await client.get("/auth/token", params={"service": SERVICE}, headers=basic("nobody", "nope"))
    assert resp.status == 401


async def test_catalog_needs_catalog_scope_and_is_filtered(client) -> None:
    root = await get_token(client, "repository:secure/alpine:push", "repository:pub/tools:push",
                           "repository:other/hidden:push", user="root")
    for name in ("secure/alpine", "pub/tools", "other/hidden"):
        await push_image(client, name, bearer(root))
    no_scope = await get_token(client, "repository:secure/alpine:pull", user="carol")
    resp = await client.get("/v2/_catalog", headers=bearer(no_scope))
    assert resp.status == 401
    assert 'scope="registry:catalog:*"' in resp.headers["WWW-Authenticate"]
    carol = await get_token(client, "registry:catalog:*", user="carol")
    resp = await client.get("/v2/_catalog", headers=bearer(carol))
    assert (await resp.json())["repositories"] == ["pub/tools", "secure/alpine"]
    anonymous = await get_token(client, "registry:catalog:*")
    assert access_of(anonymous) == []
    assert (await client.get("/v2/_catalog", headers=bearer(anonymous))).status == 401


async def test_public_project_anonymous_pull(client) -> None:
    await push_image(client, "pub/tools", bearer(await get_token(client, "repository:pub/tools:pull,push",
                                                                 user="alice")))
    anonymous = await get_token(client, "repository:pub/tools:pull,push")
    assert access_of(anonymous) == [{"type": "repository", "name": "pub/tools", "actions": ["pull"]}]
    assert (await client.get("/v2/pub/tools/manifests/1.0", headers=bearer(anonymous))).status == 200
    assert (await client.get("/v2/pub/tools/manifests/1.0")).status == 200  # no token needed at all
    assert (await client.post("/v2/pub/tools/blobs/uploads/", headers=bearer(anonymous))).status == 401


async def test_admin_token(client) -> None:
    token = await get_token(client, "repository:whatever/x:*", user="root")
    assert access_of(token)[0]["actions"] == ["delete", "pull", "push"]
    digest = await push_image(client, "whatever/x", bearer(token))
    assert (await client.delete(f"/v2/whatever/x/manifests/{digest}", headers=bearer(token))).status == 202


@pytest.mark.parametrize("server_name", ["127.0.0.1:5000", "registry.example.com"])
async def test_notary_gun_scope_maps_to_repository(registry, htpasswd_file: Path, server_name: str) -> None:
    config = auth_config(htpasswd_file, token=True)
    config["trust"]["server_names"] = [server_name]
    client = await registry(config)
    gun = f"{server_name}/secure/alpine"
    token = await get_token(client, f"repository:{gun}:pull", user="carol")
    assert access_of(token) == [{"type": "repository", "name": "secure/alpine", "actions": ["pull"]}]
    resp = await client.get(f"/v2/{gun}/_trust/tuf/root.json", headers=bearer(token))
    assert resp.status == 404 and (await resp.json())["errors"][0]["code"] == "METADATA_NOT_FOUND"
    # the GUN-scoped token is a token for that repository only
    resp = await client.get(f"/v2/{server_name}/secure/other/_trust/tuf/root.json", headers=bearer(token))
    assert resp.status == 401
    assert (await client.post(f"/v2/{gun}/_trust/tuf/", headers=bearer(token))).status == 403
    alice = await get_token(client, f"repository:{gun}:*", user="alice")
    assert (await client.delete(f"/v2/{gun}/_trust/tuf/", headers=bearer(alice))).status == 200


async def test_dotted_project_is_not_taken_for_a_host(registry, htpasswd_file: Path) -> None:
    """`a.b/x` in a registry scope is project `a.b` unless `a.b` is a name of this server."""
    config = auth_config(htpasswd_file, token=True)
    config["projects"]["a.b"] = {"members": {"carol": ["pull", "push"]}}
    client = await registry(config)
    token = await get_token(client, "repository:a.b/x:pull,push", user="carol")
    assert access_of(token) == [{"type": "repository", "name": "a.b/x", "actions": ["pull", "push"]}]
    assert (await client.post("/v2/a.b/x/blobs/uploads/", headers=bearer(token))).status == 202
    # alice holds push on `secure`, not on `a.b`: a scope cannot be bent into another repository
    token = await get_token(client, "repository:a.b/secure/x:push", user="alice")
    assert access_of(token) == []


async def test_removed_user_token_refused_after_reload(client, htpasswd_file: Path) -> None:
    token = await get_token(client, "repository:secure/a:pull", user="alice")
    assert (await client.get("/v2/", headers=bearer(token))).status == 200
    write_htpasswd(htpasswd_file, {u: p for u, p in PASSWORDS.items() if u != "alice"})
    client.app[AUTH].reload()
    assert (await client.get("/v2/", headers=bearer(token))).status == 401


async def test_oauth_password_grant(client) -> None:
    form = {"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"], "service": SERVICE,
            "scope": "repository:secure/a:pull", "client_id": "containerd-client"}
    resp = await client.post("/auth/token", data=form)
    assert resp.status == 200
    body = await resp.json()
    assert access_of(body["access_token"])[0]["name"] == "secure/a"
    assert (await client.post("/auth/token", data={**form, "password": "nope"})).status == 401
    assert (await client.post("/auth/token", data={**form, "grant_type": "refresh_token"})).status == 400


async def test_generated_key_is_shared_through_storage(registry, htpasswd_file: Path) -> None:
    config = auth_config(htpasswd_file, token=True)
    first = await registry(config)
    second = await registry(config)  # another replica on the same storage
    token = await get_token(first, "repository:secure/a:pull", user="alice")
    assert (await second.get("/v2/", headers=bearer(token))).status == 200
    stored = await first.app[DRIVER].get(KEY_OBJECT)
    assert stored.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert await second.app[DRIVER].get(KEY_OBJECT) == stored


async def test_replicas_starting_together_agree_on_one_key(make_driver) -> None:
    """Several replicas on empty storage at the same instant: each creates a key only if none is
    stored, so all of them sign and verify with the same one."""
    import asyncio

    from registry.auth.tokens import load_or_create_key

    drivers = [make_driver() for _ in range(6)]  # one per replica, sharing the backing store
    try:
        keys = await asyncio.gather(*(load_or_create_key(d) for d in drivers))
        public = {k.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) for k in keys}
        assert len(public) == 1
    finally:
        for d in drivers:
            await d.close()


async def test_configured_key_file(registry, htpasswd_file: Path, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "token.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    client = await registry(auth_config(htpasswd_file, token=True, key=str(path)))
    token = await get_token(client, user="alice")
    jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=SERVICE)  # raises if another key signed
    with pytest.raises(PathNotFoundError):  # nothing generated when a key is configured
        await client.app[DRIVER].get(KEY_OBJECT)


async def test_bad_key_file_refused(registry, htpasswd_file: Path, tmp_path: Path) -> None:
    from config.loader import ConfigError

    path = tmp_path / "token.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="auth.token.key"):
        await registry(auth_config(htpasswd_file, token=True, key=str(path)))
