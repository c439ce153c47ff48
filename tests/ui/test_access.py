"""Who sees what in /api/v1/ and /ui/: the registry's principals and roles (Basic and token modes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.auth.conftest import PASSWORDS, auth_config, basic, bearer, write_htpasswd
from tests.ui.conftest import make_signed_repo, notary_login, push, url_of

CHALLENGE = 'Basic realm="trustreg"'


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    return write_htpasswd(tmp_path / "htpasswd", PASSWORDS)


async def start(registry, htpasswd: Path, token: bool = False):
    config = auth_config(htpasswd, token=token)
    config["projects"]["secure"]["content_trust"] = {"enforce": True}
    client = await registry(config)
    return client


async def seed(client, alice: dict[str, str]) -> None:
    await push(client, "secure/app", "1", "secure", alice)
    await push(client, "pub/app", "1", "pub", alice)
    await push(client, "hidden/app", "1", "hidden", basic("root"))


async def project_names(client, headers: dict[str, str]) -> list[str]:
    resp = await client.get("/api/v1/projects", headers=headers)
    assert resp.status == 200, await resp.text()
    return [p["name"] for p in await resp.json()]


async def test_projects_show_what_the_caller_may_see(registry, htpasswd: Path) -> None:
    client = await start(registry, htpasswd)
    await seed(client, basic("alice"))
    assert await project_names(client, {}) == ["pub"]  # anonymous: public projects only
    assert await project_names(client, basic("carol")) == ["pub", "secure"]
    assert await project_names(client, basic("stranger")) == ["pub"]
    assert await project_names(client, basic("root")) == ["hidden", "pub", "secure"]
    resp = await client.get("/api/v1/projects", headers=basic("carol", "wrong"))
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_tags_need_pull_like_the_registry(registry, htpasswd: Path) -> None:
    client = await start(registry, htpasswd)
    await seed(client, basic("alice"))
    url = "/api/v1/repositories/secure/app/tags"
    resp = await client.get(url)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    assert (await resp.json())["errors"][0]["code"] == "UNAUTHORIZED"
    resp = await client.get(url, headers=basic("stranger"))
    assert resp.status == 403 and (await resp.json())["errors"][0]["code"] == "DENIED"
    assert (await client.get(url, headers=basic("carol"))).status == 200
    assert (await client.get("/api/v1/repositories/pub/app/tags")).status == 200  # public: anonymous pull
    for path in ("tags/1", f"manifests/sha256:{'0' * 64}"):
        assert (await client.get(f"/api/v1/repositories/secure/app/{path}")).status == 401
        assert (await client.get(f"/api/v1/repositories/secure/app/{path}", headers=basic("stranger"))).status == 403
    # the answer is the same whether the repository exists or not (nothing leaks)
    assert (await client.get("/api/v1/repositories/secure/nothing/tags", headers=basic("stranger"))).status == 403


async def test_ui_pages_need_pull(registry, htpasswd: Path) -> None:
    client = await start(registry, htpasswd)
    await seed(client, basic("alice"))
    resp = await client.get("/ui/repositories/secure/app")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    assert resp.content_type == "text/html" and "Log in" in await resp.text()
    resp = await client.get("/ui/repositories/secure/app", headers=basic("stranger"))
    assert resp.status == 403 and "Forbidden" in await resp.text()
    resp = await client.get("/ui/repositories/secure/app", headers=basic("carol"))
    assert resp.status == 200 and 'data-tag="1"' in await resp.text()
    page = await (await client.get("/ui/")).text()
    assert 'data-project="pub"' in page and 'data-project="secure"' not in page and "log in" in page
    page = await (await client.get("/ui/", headers=basic("carol"))).text()
    assert 'data-project="secure"' in page and "signed in as <strong>carol</strong>" in page


async def test_login_challenges_then_redirects(registry, htpasswd: Path) -> None:
    client = await start(registry, htpasswd)
    resp = await client.get("/ui/login", allow_redirects=False)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    resp = await client.get("/ui/login", headers=basic("carol", "nope"), allow_redirects=False)
    assert resp.status == 401
    resp = await client.get("/ui/login", headers=basic("carol"), allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui/"


async def test_open_registry_shows_everything(registry) -> None:
    client = await registry({"projects": {"secure": {"public": False}}})
    await push(client, "secure/app", "1", "x")
    assert [p["name"] for p in await (await client.get("/api/v1/projects")).json()] == ["secure"]
    assert (await client.get("/api/v1/repositories/secure/app/tags")).status == 200
    resp = await client.get("/ui/login", allow_redirects=False)
    assert resp.status == 302  # nothing to log in to


async def token(client, user: str, *scopes: str) -> dict[str, str]:
    resp = await client.get("/auth/token", params=[("service", "trustreg-test"), *(("scope", s) for s in scopes)],
                            headers=basic(user))
    assert resp.status == 200
    return bearer((await resp.json())["token"])


async def test_token_mode(registry, htpasswd: Path) -> None:
    client = await start(registry, htpasswd, token=True)
    await push(client, "secure/app", "1", "secure", await token(client, "root", "repository:secure/app:*"))
    await push(client, "pub/app", "1", "pub", await token(client, "root", "repository:pub/app:*"))
    url = "/api/v1/repositories/secure/app/tags"
    assert (await client.get(url, headers=await token(client, "carol", "repository:secure/app:pull"))).status == 200
    assert (await client.get(url, headers=basic("carol"))).status == 200  # Basic works here too (browsers)
    resp = await client.get(url, headers=await token(client, "carol", "repository:secure/x:pull"))
    assert resp.status == 403  # a token for another repository does not open this one
    assert (await client.get(url, headers=bearer("garbage"))).status == 401
    assert (await client.get("/api/v1/repositories/pub/app/tags")).status == 200


async def test_signed_repo_behind_auth(registry, htpasswd: Path, tmp_path: Path) -> None:
    """Notary publishes through the auth middleware; the API then shows the signature to carol."""
    client = await start(registry, htpasswd)
    repo = await make_signed_repo(client, url_of(client), tmp_path / "notary", basic("alice"),
                                  notary_login("alice", PASSWORDS["alice"]))
    reports = {r["tag"]: r for r in await (await client.get("/api/v1/repositories/secure/app/tags",
                                                             headers=basic("carol"))).json()}
    assert reports["signed"]["decision"]["served"] is True
    assert reports["signed"]["digest"] == repo.digests["signed"]
    assert reports["unsigned"]["decision"] == {"served": False, "reason": "tag not signed"}
