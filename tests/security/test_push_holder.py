"""Issue 15 §4: the push-holder exemption follows what the request's credential grants.

alice's account may push to `secure`. A pull-only token of hers (what a kubelet pull secret made from
a CI account holds) must read unsigned manifests in an enforced project like any puller: refused, by
HEAD and by digest. Her push-scoped token (what `cosign sign`, `notation sign`, docker use) is exempt.
With Basic auth the credential is the account itself, so its roles decide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.auth.conftest import auth_config, basic, bearer, htpasswd_file, push_image  # noqa: F401
from tests.auth.test_token_api import get_token


def enforced(config: dict[str, Any]) -> dict[str, Any]:
    config["projects"]["secure"]["content_trust"] = {"enforce": True}
    return config


async def _reads(client: Any, headers: dict[str, str], digest: str) -> tuple[int, int, int]:
    head = await client.head(f"/v2/secure/app/manifests/{digest}", headers=headers)
    get = await client.get(f"/v2/secure/app/manifests/{digest}", headers=headers)
    by_tag = await client.get("/v2/secure/app/manifests/1.0", headers=headers)
    return head.status, get.status, by_tag.status


async def test_pull_only_token_of_a_push_account_is_gated(registry, htpasswd_file: Path) -> None:  # noqa: F811
    client = await registry(enforced(auth_config(htpasswd_file, token=True)))
    push = await get_token(client, "repository:secure/app:pull,push", user="alice")
    digest = await push_image(client, "secure/app", bearer(push))
    pull_only = await get_token(client, "repository:secure/app:pull", user="alice")
    assert await _reads(client, bearer(pull_only), digest) == (412, 412, 412)
    assert await _reads(client, bearer(push), digest) == (200, 200, 412)  # signing tools: exempt, not by tag


async def test_push_token_for_another_repository_does_not_exempt(registry, htpasswd_file: Path) -> None:  # noqa: F811
    client = await registry(enforced(auth_config(htpasswd_file, token=True)))
    digest = await push_image(client, "secure/app", bearer(
        await get_token(client, "repository:secure/app:pull,push", user="alice")))
    token = await get_token(client, "repository:secure/app:pull", "repository:secure/other:pull,push", user="alice")
    assert await _reads(client, bearer(token), digest) == (412, 412, 412)


async def test_basic_auth_follows_the_account(registry, htpasswd_file: Path) -> None:  # noqa: F811
    client = await registry(enforced(auth_config(htpasswd_file)))
    digest = await push_image(client, "secure/app", basic("alice"))
    assert await _reads(client, basic("alice"), digest) == (200, 200, 412)
    assert await _reads(client, basic("carol"), digest) == (412, 412, 412)


async def test_signing_tools_are_invited_to_show_push_runtimes_are_not(registry, htpasswd_file: Path) -> None:  # noqa: F811
    """notation and cosign read the subject with a pull token first: a refused read by them gets an
    insufficient_scope challenge for pull,push (their account may push); a runtime's does not."""
    client = await registry(enforced(auth_config(htpasswd_file, token=True)))
    digest = await push_image(client, "secure/app", bearer(
        await get_token(client, "repository:secure/app:pull,push", user="alice")))
    pull_only = await get_token(client, "repository:secure/app:pull", user="alice")
    path = f"/v2/secure/app/manifests/{digest}"
    for agent in ("notation/1.3.2", "cosign/v3.0.2 (linux; amd64) go-containerregistry/v0.20.6"):
        resp = await client.head(path, headers={**bearer(pull_only), "User-Agent": agent})
        assert resp.status == 401, agent
        challenge = resp.headers["WWW-Authenticate"]
        assert 'scope="repository:secure/app:pull,push"' in challenge and 'error="insufficient_scope"' in challenge
    for agent in ("containerd/1.6.20", "docker/28.2.2 go/go1.24", "skopeo/1.9"):
        resp = await client.head(path, headers={**bearer(pull_only), "User-Agent": agent})
        assert resp.status == 412, agent
    carol = await get_token(client, "repository:secure/app:pull", user="carol")  # may not push: no invitation
    resp = await client.head(path, headers={**bearer(carol), "User-Agent": "notation/1.3.2"})
    assert resp.status == 412
    # private project: the login challenge already invites a signing tool to ask for push (not a runtime)
    anonymous = await client.head(path, headers={"User-Agent": "notation/1.3.2"})
    assert anonymous.status == 401
    assert 'scope="repository:secure/app:pull,push"' in anonymous.headers["WWW-Authenticate"]
    runtime = await client.head(path, headers={"User-Agent": "containerd/1.6.20"})
    assert runtime.status == 401 and 'scope="repository:secure/app:pull"' in runtime.headers["WWW-Authenticate"]
