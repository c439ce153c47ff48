"""The upstream client's protocol against a scripted upstream: redirects, 429, the token flow."""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.proxy.conftest import http
from tests.proxy.fake import FakeRegistry, error, sha256


@pytest.fixture
def fakes() -> Iterator[list[FakeRegistry]]:
    started: list[FakeRegistry] = []
    yield started
    for fake in started:
        fake.stop()


def test_redirects_only_to_https_or_the_upstream_itself(fakes, proxy_server) -> None:
    foreign = FakeRegistry()
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"layer bytes " * 100
    foreign.blobs[sha256(layer)] = layer
    fakes.append(foreign.start())

    def redirect(request: web.Request) -> web.StreamResponse | None:
        if request.path.endswith(f"/blobs/{sha256(config)}"):  # blob storage on the upstream's own host
            raise web.HTTPTemporaryRedirect(f"/storage/{sha256(config)}")
        if request.path.endswith(f"/blobs/{sha256(layer)}"):  # plain http on another host
            raise web.HTTPTemporaryRedirect(f"{foreign.url}/v2/x/blobs/{sha256(layer)}")
        if request.path.startswith("/storage/"):
            return web.Response(body=config)
        return None

    upstream = FakeRegistry(redirect)
    digest = upstream.add_image("v1", config, layer)
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False)
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 200 and sha256(body) == digest
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(config)}")
    assert status == 200 and body == config
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}")
    assert status == 502 and "redirect" in json.loads(body)["errors"][0]["message"]
    assert foreign.requests == []
    assert http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}")[0] == 502  # nothing cached meanwhile


def test_rate_limit_retried_then_surfaced_as_429(fakes, proxy_server) -> None:
    def limited(request: web.Request) -> web.StreamResponse | None:
        if "/manifests/" in request.path:
            return error(429, "TOOMANYREQUESTS", {"Retry-After": "0"})
        return None

    upstream = FakeRegistry(limited)
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False)
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 429 and json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert upstream.requests.count("GET /v2/team/app/manifests/v1") == 4  # retried, then surfaced


def test_rate_limit_that_clears_is_absorbed(fakes, proxy_server) -> None:
    answers = iter([error(429, "TOOMANYREQUESTS", {"Retry-After": "1"}),
                    error(503, "UNAVAILABLE")])

    def flaky(request: web.Request) -> web.StreamResponse | None:
        return next(answers, None) if "/manifests/" in request.path else None

    upstream = FakeRegistry(flaky)
    upstream.add_image("v1", b"{}", b"layer")
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False)
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[0] == 200


def test_token_flow_with_basic_credentials(fakes, proxy_server) -> None:
    issued: list[str] = []
    revoked: set[str] = set()
    basic = "Basic " + base64.b64encode(b"mirror:s3cret").decode()

    def token_auth(request: web.Request) -> web.StreamResponse | None:
        if request.path == "/token":
            if request.headers.get("Authorization") != basic:
                return error(401, "UNAUTHORIZED")
            assert request.query["scope"] == "repository:team/app:pull" and request.query["service"] == "fake"
            issued.append(f"token-{len(issued)}")
            return web.json_response({"token": issued[-1], "expires_in": 300})
        if request.headers.get("Authorization") not in [f"Bearer {t}" for t in issued if t not in revoked]:
            challenge = (f'Bearer realm="http://127.0.0.1:{request.url.port}/token",service="fake",'
                         'scope="repository:team/app:pull"')
            return error(401, "UNAUTHORIZED", {"WWW-Authenticate": challenge})
        return None

    upstream = FakeRegistry(token_auth)
    config, layer = b"{}", b"layer"
    digest = upstream.add_image("v1", config, layer)
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False, username="mirror", password_env="UPSTREAM_PASSWORD",
                         env={"UPSTREAM_PASSWORD": "s3cret"})
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 200 and sha256(body) == digest
    status, headers, _ = http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}", "HEAD")  # fetched to answer
    assert status == 200 and headers["Content-Length"] == str(len(layer))
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}", headers={"Range": "bytes=1-3"})
    assert status == 206 and body == layer[1:4]
    assert upstream.requests.count(f"GET /v2/team/app/blobs/{sha256(layer)}") == 1
    assert issued == ["token-0"]  # one token, cached for its scope and sent up front
    assert upstream.requests.count("GET /token") == 1
    revoked.add("token-0")  # the upstream ends it before its expiry: a new one is fetched
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/tags/list")
    assert status == 200 and json.loads(body)["tags"] == ["v1"]
    assert issued == ["token-0", "token-1"]


def test_tls_upstream_with_its_ca_and_credentials_kept_on_its_host(fakes, proxy_server, certs: Path) -> None:
    """`ca` trusts the upstream's CA; a redirect to blob storage on another https host is followed
    without the upstream's credentials."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certs / "server.crt", certs / "server.key")
    storage = FakeRegistry(tls=tls, host="localhost")  # another host (the certificate names both)
    config, layer = b"{}", b"layer on blob storage"
    storage.blobs[sha256(layer)] = layer
    fakes.append(storage.start())

    def basic_and_redirect(request: web.Request) -> web.StreamResponse | None:
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"mirror:pw").decode():
            return error(401, "UNAUTHORIZED", {"WWW-Authenticate": 'Basic realm="upstream"'})
        if request.path.endswith(f"/blobs/{sha256(layer)}"):
            raise web.HTTPTemporaryRedirect(f"{storage.url}/v2/x/blobs/{sha256(layer)}")
        return None

    upstream = FakeRegistry(basic_and_redirect, tls=tls)
    digest = upstream.add_image("v1", config, layer)
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False, ca=str(certs / "ca.crt"), username="mirror",
                         password_env="MIRROR_PW", env={"MIRROR_PW": "pw"})
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 200 and sha256(body) == digest
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/blobs/{sha256(layer)}")
    assert status == 200 and body == layer
    assert storage.requests == [f"GET /v2/x/blobs/{sha256(layer)}"] and storage.authorizations == [None]
    # without the CA the upstream's certificate is not trusted: unavailable, not a 500
    untrusting = proxy_server(upstream.url, enforce=False)
    status, _, body = http(f"{untrusting.url}/v2/hub/team/app/manifests/v1")
    assert status == 503 and "unreachable" in json.loads(body)["errors"][0]["message"]


def test_oversized_manifest_refused_unread(fakes, proxy_server) -> None:
    upstream = FakeRegistry()
    big = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"),
                                 "size": 2}, "layers": [],
                      "annotations": {"padding": "x" * (5 * 1024 * 1024)}}).encode()
    upstream.manifests["v1"] = upstream.manifests[sha256(big)] = big
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False)
    for ref in ("v1", sha256(big)):
        status, _, body = http(f"{proxy.url}/v2/hub/team/app/manifests/{ref}")
        assert status == 502 and "larger than 4194304 bytes" in json.loads(body)["errors"][0]["message"]
    assert http(f"{proxy.url}/v2/hub/team/app/tags/list")[0] == 200  # the upstream itself still answers


def test_upstream_5xx_serves_the_cached_tag_stale_and_asks_again_later(fakes, proxy_server) -> None:
    failing = {"on": False}

    def broken(request: web.Request) -> web.StreamResponse | None:
        return error(500, "UNKNOWN") if failing["on"] and "/manifests/" in request.path else None

    upstream = FakeRegistry(broken)
    digest = upstream.add_image("v1", b"{}", b"layer")
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False, tag_ttl=1)
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[1]["X-Trustreg-Proxy"] == "miss"
    failing["on"] = True
    time.sleep(1.1)
    asked = len(upstream.requests)
    for _ in range(3):  # the first asks the upstream (500), the next are served stale without asking
        status, headers, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
        assert status == 200 and sha256(body) == digest and headers["X-Trustreg-Proxy"] == "stale"
    assert upstream.requests[asked:] == ["HEAD /v2/team/app/manifests/v1"]
    assert "upstream unavailable" in proxy.log() and "answered 500" in proxy.log()


def test_cached_tag_removed_from_storage_is_fetched_again(fakes, proxy_server) -> None:
    """A tag this process knows fresh but storage lost (retention, another replica) is resolved again."""
    upstream = FakeRegistry()
    digest = upstream.add_image("v1", b"{}", b"layer")
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False)
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[1]["X-Trustreg-Proxy"] == "miss"
    assert http(f"{proxy.url}/v2/hub/team/app/manifests/v1")[1]["X-Trustreg-Proxy"] == "hit"
    (proxy.workdir / "data/repositories/hub/team/app/_manifests/tags/v1").unlink()
    status, headers, body = http(f"{proxy.url}/v2/hub/team/app/manifests/v1")
    assert status == 200 and headers["X-Trustreg-Proxy"] == "miss" and sha256(body) == digest


def test_tags_list_follows_the_upstreams_pages_on_its_own_list(fakes, proxy_server) -> None:
    """Docker Hub pages its tags lists (`Link: <...>; rel="next"`): every page is read; a next link
    elsewhere (another host, another repository) is not followed."""
    foreign = FakeRegistry()
    fakes.append(foreign.start())
    pages = {
        "": (["a", "b"], '</v2/team/app/tags/list?last=b&n=2>; rel="next"'),
        "last=b&n=2": (["c", "d"], '</v2/team/app/tags/list?last=d&n=2>; rel="next"'),
        "last=d&n=2": (["e"], f'<{foreign.url}/v2/team/app/tags/list?last=e&n=2>; rel="next"'),
    }

    def paged(request: web.Request) -> web.StreamResponse | None:
        if not request.path.endswith("/tags/list"):
            return None
        if request.path == "/v2/other/tags/list":
            return web.json_response({"name": "other", "tags": ["x"],},
                                     headers={"Link": '</v2/team/app/tags/list?last=x>; rel="next"'})
        tags, link = pages[request.query_string]
        return web.json_response({"name": "team/app", "tags": tags}, headers={"Link": link})

    upstream = FakeRegistry(paged)
    fakes.append(upstream.start())
    proxy = proxy_server(upstream.url, enforce=False)
    status, _, body = http(f"{proxy.url}/v2/hub/team/app/tags/list")
    assert status == 200 and json.loads(body)["tags"] == ["a", "b", "c", "d", "e"]
    assert foreign.requests == []
    status, _, body = http(f"{proxy.url}/v2/hub/other/tags/list")
    assert status == 200 and json.loads(body)["tags"] == ["x"]  # a next link into another list: not followed
