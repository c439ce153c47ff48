"""Proxy projects in /api/v1/ and the UI without an upstream (every storage driver): the project is marked
as a proxy of its URL, its credentials are never shown, and nothing here contacts the upstream."""

from __future__ import annotations

import pytest

UPSTREAM = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing may be asked
PASSWORD = "proxy-ui-secret-password"
CONFIG = {"projects": {
    "hub": {"proxy": {"url": UPSTREAM, "username": "mirror-account", "password_env": "TRUSTREG_UI_PROXY_PW",
                      "tag_ttl": 120},
            "content_trust": {"enforce": False}},
    "local": {},
}}


@pytest.fixture
async def client(registry, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRUSTREG_UI_PROXY_PW", PASSWORD)
    return await registry(CONFIG)


async def test_projects_mark_the_proxy_without_credentials(client) -> None:
    resp = await client.get("/api/v1/projects")
    assert resp.status == 200
    body = await resp.text()
    assert "mirror-account" not in body and PASSWORD not in body
    projects = {p["name"]: p for p in await resp.json()}
    assert projects["hub"]["proxy"] == {"url": UPSTREAM, "tag_ttl": 120}
    assert "proxy" not in projects["local"]

    page = await (await client.get("/ui/")).text()
    hub = page.split('data-project="hub"', 1)[1].split("</tr>", 1)[0]
    assert f'<span class="badge proxy-badge">proxy</span> of <code>{UPSTREAM}</code>' in hub
    assert "proxy-badge" not in page.split('data-project="local"', 1)[1].split("</tr>", 1)[0]
    assert "mirror-account" not in page and PASSWORD not in page


async def test_proxy_listing_only_in_proxy_projects(client) -> None:
    resp = await client.get("/api/v1/repositories/hub/team/app/proxy")
    assert resp.status == 200
    assert await resp.json() == {"repository": "hub/team/app", "project": "hub",
                                 "proxy": {"url": UPSTREAM, "tag_ttl": 120}, "refused": []}
    resp = await client.get("/api/v1/repositories/local/app/proxy")
    assert resp.status == 404
    assert (await resp.json())["errors"][0]["code"] == "NAME_UNKNOWN"
