"""Automatic cross-mount (`?mount=` without `from`) against a real server with authentication."""

from __future__ import annotations

from pathlib import Path

from tests.auth.conftest import auth_config, basic, htpasswd_file, push_image  # noqa: F401  (fixture)
from tests.helpers import digest_of


async def test_mount_from_a_pullable_repository(registry, htpasswd_file: Path) -> None:  # noqa: F811
    client = await registry(auth_config(htpasswd_file))
    await push_image(client, "secure/src", basic("root"))
    await push_image(client, "pub/tools", basic("root"))
    for repo, layer in (("secure/src", b"layer of secure/src"), ("pub/tools", b"layer of pub/tools")):
        resp = await client.post(f"/v2/secure/copy/blobs/uploads/?mount={digest_of(layer)}", headers=basic("alice"))
        assert resp.status == 201, (repo, await resp.text())
        assert resp.headers["Location"] == f"/v2/secure/copy/blobs/{digest_of(layer)}"
        resp = await client.get(f"/v2/secure/copy/blobs/{digest_of(layer)}", headers=basic("alice"))
        assert resp.status == 200 and await resp.read() == layer


async def test_never_leaks_existence(registry, htpasswd_file: Path) -> None:  # noqa: F811
    """A blob only a repository alice may not pull holds answers exactly like one nobody has."""
    client = await registry(auth_config(htpasswd_file))
    await push_image(client, "other/hidden", basic("root"))
    hidden, unknown = digest_of(b"layer of other/hidden"), digest_of(b"nobody has this")
    answers = []
    for digest in (hidden, unknown):
        resp = await client.post(f"/v2/secure/copy/blobs/uploads/?mount={digest}", headers=basic("alice"))
        assert resp.status == 202, await resp.text()
        assert resp.headers["Location"].startswith("/v2/secure/copy/blobs/uploads/")
        answers.append((resp.status, sorted(k for k in resp.headers if k not in ("Date", "X-Request-Id")),
                        resp.headers["Range"], await resp.read()))
        head = await client.head(f"/v2/secure/copy/blobs/{digest}", headers=basic("alice"))
        assert head.status == 404
    assert answers[0][0] == answers[1][0] and answers[0][1:] == answers[1][1:]
    # the admin may pull every repository: mounted
    resp = await client.post(f"/v2/secure/copy/blobs/uploads/?mount={hidden}", headers=basic("root"))
    assert resp.status == 201


async def test_without_auth_any_repository(registry) -> None:
    client = await registry()
    await push_image(client, "a/src", {})
    layer = digest_of(b"layer of a/src")
    resp = await client.post(f"/v2/b/dst/blobs/uploads/?mount={layer}")
    assert resp.status == 201
    resp = await client.post(f"/v2/b/dst/blobs/uploads/?mount={digest_of(b'absent')}")
    assert resp.status == 202
