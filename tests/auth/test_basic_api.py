"""HTTP Basic mode (no `auth.token`) against a real loopback server: every denial and grant."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from registry.auth import AUTH
from tests.auth.conftest import PASSWORDS, auth_config, basic, htpasswd_line, push_image, write_htpasswd
from tests.helpers import digest_of

CHALLENGE = 'Basic realm="trustreg"'


@pytest.fixture
async def client(registry, htpasswd_file: Path):
    return await registry(auth_config(htpasswd_file))


async def _error(resp) -> dict:
    body = await resp.json()
    return body["errors"][0]


async def test_ping_needs_login(client) -> None:
    resp = await client.get("/v2/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == CHALLENGE
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert (await _error(resp))["code"] == "UNAUTHORIZED"
    assert (await client.get("/v2/", headers=basic("carol"))).status == 200


async def test_open_endpoints_stay_open(client) -> None:
    assert (await client.get("/healthz")).status == 200


async def test_anonymous_push_is_challenged(client) -> None:
    resp = await client.post("/v2/secure/alpine/blobs/uploads/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == CHALLENGE
    err = await _error(resp)
    assert err["code"] == "UNAUTHORIZED"
    assert err["detail"] == [{"Type": "repository", "Name": "secure/alpine", "Action": "push"}]
    # even into a public project
    assert (await client.post("/v2/pub/alpine/blobs/uploads/")).status == 401


async def test_private_pull(client) -> None:
    await push_image(client, "secure/alpine", basic("alice"))
    assert (await client.get("/v2/secure/alpine/manifests/1.0")).status == 401
    resp = await client.get("/v2/secure/alpine/manifests/1.0", headers=basic("stranger"))
    assert resp.status == 403
    assert (await _error(resp))["code"] == "DENIED"
    assert (await client.get("/v2/secure/alpine/manifests/1.0", headers=basic("carol"))).status == 200
    assert (await client.get("/v2/secure/alpine/tags/list", headers=basic("stranger"))).status == 403


async def test_pull_only_member_cannot_push_or_delete(client) -> None:
    digest = await push_image(client, "secure/alpine", basic("alice"))
    resp = await client.post("/v2/secure/alpine/blobs/uploads/", headers=basic("carol"))
    assert resp.status == 403
    err = await _error(resp)
    assert err["code"] == "DENIED" and "secure/alpine" in err["message"]
    resp = await client.put("/v2/secure/alpine/manifests/2.0", data=b"{}", headers=basic("carol"))
    assert resp.status == 403
    resp = await client.delete(f"/v2/secure/alpine/manifests/{digest}", headers=basic("carol"))
    assert resp.status == 403
    assert (await client.delete(f"/v2/secure/alpine/manifests/{digest}", headers=basic("alice"))).status == 202


async def test_wrong_password_and_unknown_user_answer_alike(client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trustreg.auth")
    wrong = await client.get("/v2/secure/a/tags/list", headers=basic("alice", "not-her-password"))
    unknown = await client.get("/v2/secure/a/tags/list", headers=basic("mallory", "not-her-password"))
    assert wrong.status == unknown.status == 401
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == CHALLENGE
    assert await wrong.read() == await unknown.read()
    assert "not-her-password" not in caplog.text
    assert "'alice'" in caplog.text and "'mallory'" in caplog.text
    garbled = await client.get("/v2/", headers={"Authorization": "Basic !!!"})
    assert garbled.status == 401


async def test_public_project_anonymous_pull(client) -> None:
    digest = await push_image(client, "pub/tools", basic("alice"))
    resp = await client.get("/v2/pub/tools/manifests/1.0")
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == digest
    assert (await client.get("/v2/pub/tools/manifests/1.0", headers=basic("stranger"))).status == 200
    assert (await client.put("/v2/pub/tools/manifests/2.0", data=b"{}", headers=basic("stranger"))).status == 403


async def test_admin_may_do_everything(client) -> None:
    digest = await push_image(client, "anywhere/thing", basic("root"))
    await push_image(client, "secure/alpine", basic("root"))
    assert (await client.get("/v2/secure/alpine/manifests/1.0", headers=basic("root"))).status == 200
    assert (await client.delete(f"/v2/anywhere/thing/manifests/{digest}", headers=basic("root"))).status == 202
    assert (await client.get("/v2/_trust/changefeed?records=1", headers=basic("root"))).status == 200
    assert (await client.get("/v2/_trust/changefeed?records=1")).status == 401


async def test_catalog_lists_only_pullable(client) -> None:
    for name in ("secure/alpine", "pub/tools", "other/hidden", "alpine"):
        await push_image(client, name, basic("root"))

    async def catalog(headers: dict[str, str]) -> list[str]:
        resp = await client.get("/v2/_catalog", headers=headers)
        assert resp.status == 200
        return (await resp.json())["repositories"]

    assert await catalog(basic("root")) == ["alpine", "other/hidden", "pub/tools", "secure/alpine"]
    assert await catalog(basic("carol")) == ["pub/tools", "secure/alpine"]
    assert await catalog(basic("stranger")) == ["pub/tools"]
    assert (await client.get("/v2/_catalog")).status == 401


async def test_mount_needs_pull_on_source(client) -> None:
    await push_image(client, "other/hidden", basic("root"))
    layer = digest_of(b"layer of other/hidden")
    # alice may push to secure but not pull from other: no mount, a fresh upload session instead
    resp = await client.post(f"/v2/secure/copy/blobs/uploads/?mount={layer}&from=other/hidden", headers=basic("alice"))
    assert resp.status == 202
    resp = await client.post(f"/v2/secure/copy/blobs/uploads/?mount={layer}&from=other/hidden", headers=basic("root"))
    assert resp.status == 201


async def test_trust_api_paths_use_the_repository_roles(client) -> None:
    gun = "127.0.0.1:5000/secure/alpine"  # a server name of the default http.addr
    path = f"/v2/{gun}/_trust/tuf/root.json"
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers=basic("stranger"))).status == 403
    resp = await client.get(path, headers=basic("carol"))
    assert resp.status == 404 and (await resp.json())["errors"][0]["code"] == "METADATA_NOT_FOUND"
    assert (await client.get(f"/v2/{gun}/_trust/tuf/timestamp.key", headers=basic("carol"))).status == 403  # creates
    assert (await client.get(f"/v2/{gun}/_trust/tuf/timestamp.key", headers=basic("alice"))).status == 200
    assert (await client.get(f"/v2/{gun}/_trust/tuf/timestamp.key", headers=basic("carol"))).status == 200
    assert (await client.post(f"/v2/{gun}/_trust/tuf/", headers=basic("carol"))).status == 403
    assert (await client.delete(f"/v2/{gun}/_trust/tuf/", headers=basic("carol"))).status == 403
    assert (await client.post(f"/v2/{gun}/_trust/tuf/snapshot.key", headers=basic("carol"))).status == 403
    assert (await client.delete(f"/v2/{gun}/_trust/tuf/", headers=basic("alice"))).status == 200


async def test_reload_picks_up_new_user(client, htpasswd_file: Path) -> None:
    svc = client.app[AUTH]
    assert (await client.get("/v2/", headers=basic("dave", "dave-pw"))).status == 401
    write_htpasswd(htpasswd_file, {**PASSWORDS, "dave": "dave-pw"})
    svc.reload()
    assert (await client.get("/v2/", headers=basic("dave", "dave-pw"))).status == 200
    # a removed user is gone at once, even though their last success was cached
    assert (await client.get("/v2/", headers=basic("alice"))).status == 200
    write_htpasswd(htpasswd_file, {"dave": "dave-pw"})
    svc.reload()
    assert (await client.get("/v2/", headers=basic("alice"))).status == 401


async def test_reload_with_bad_file_keeps_users(client, htpasswd_file: Path) -> None:
    from config.loader import ConfigError

    htpasswd_file.write_text(htpasswd_line("dave", "dave-pw") + "eve:$apr1$xyz$abc\n")
    with pytest.raises(ConfigError, match="only bcrypt"):
        client.app[AUTH].reload()
    assert (await client.get("/v2/", headers=basic("alice"))).status == 200
    assert (await client.get("/v2/", headers=basic("dave", "dave-pw"))).status == 401


async def test_config_reload_hook_reloads_users_and_roles(aiohttp_client, make_driver, htpasswd_file: Path,
                                                         tmp_path: Path) -> None:
    """The app's configuration reload (SIGHUP) re-reads users and roles through the auth hook."""
    import yaml

    from config.loader import load_settings
    from registry import ops
    from registry.app import create_app

    path = tmp_path / "config.yaml"
    config = auth_config(htpasswd_file)
    path.write_text(yaml.safe_dump(config))
    client = await aiohttp_client(create_app(load_settings(str(path)), driver=make_driver(), config_path=str(path)))
    assert (await client.get("/v2/secure/a/tags/list", headers=basic("stranger"))).status == 403
    config["projects"]["secure"]["members"]["stranger"] = ["pull"]
    path.write_text(yaml.safe_dump(config))
    assert await ops.reload(client.app)
    assert (await client.get("/v2/secure/a/tags/list", headers=basic("stranger"))).status == 404


async def test_non_bcrypt_file_refuses_to_start(registry, tmp_path: Path) -> None:
    from config.loader import ConfigError

    path = tmp_path / "htpasswd"
    path.write_text("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
    with pytest.raises(ConfigError, match="unsupported hash type SHA-1"):
        await registry(auth_config(path))


async def test_no_auth_section_stays_open(registry) -> None:
    client = await registry({"trust": {"enabled": False}})
    assert (await client.get("/v2/")).status == 200
    assert (await client.post("/v2/any/thing/blobs/uploads/")).status == 202
