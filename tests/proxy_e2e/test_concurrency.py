"""50 concurrent pulls of one uncached image through a proxy project: every client gets the image, each
byte checked against its digest, and the upstream's own access log shows each manifest and blob fetched
once (request coalescing). Upstreams: a second trustreg (token auth) and distribution 2.8.2."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter

import aiohttp
import pytest

from tests.proxy_e2e.conftest import Distribution, Upstream

CLIENTS = 50
ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
# trustreg: `GET /v2/src/crowd/blobs/sha256:... 200 1234 0.0012s ...`;
# distribution: `127.0.0.1 - - [...] "GET /v2/crowd/blobs/sha256:... HTTP/1.1" 200 1234 "" "..."`
ACCESS_LINE = re.compile(r'(GET|HEAD) (/v2/\S+?)(?: HTTP/1\.[01]")? (\d{3}) ')


async def pull(session: aiohttp.ClientSession, base: str, name: str) -> tuple[str, dict[str, bytes]]:
    """One client's pull: the manifest by tag, then its config and layers; each checked against its digest."""
    async with session.get(f"{base}/v2/{name}/manifests/v1", headers={"Accept": ACCEPT}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.read()
        digest = resp.headers["Docker-Content-Digest"]
    assert digest == f"sha256:{hashlib.sha256(body).hexdigest()}"
    doc = json.loads(body)
    blobs = {}
    for desc in [doc["config"], *doc["layers"]]:
        async with session.get(f"{base}/v2/{name}/blobs/{desc['digest']}") as resp:
            assert resp.status == 200, await resp.text()
            data = await resp.read()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == desc["digest"] and len(data) == desc["size"]
        blobs[desc["digest"]] = data
    return digest, blobs


async def crowd(base: str, name: str, clients: int = CLIENTS) -> list[tuple[str, dict[str, bytes]]]:
    """`clients` pulls at once, each on its own connection, released together."""
    start = asyncio.Event()

    async def one() -> tuple[str, dict[str, bytes]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=240)) as session:
            await start.wait()
            return await pull(session, base, name)

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await asyncio.sleep(0.2)
    start.set()
    return await asyncio.gather(*tasks)


def fetched(log: str, prefix: str, status: str = "200") -> Counter[tuple[str, str]]:
    """(method, path) of every upstream request under `prefix` answered `status`, counted."""
    return Counter((m[1], m[2]) for m in ACCESS_LINE.finditer(log) if m[2].startswith(prefix) and m[3] == status)


def assert_each_fetched_once(counts: Counter[tuple[str, str]], prefix: str, blobs: list[str]) -> None:
    assert counts[("GET", f"{prefix}/manifests/v1")] == 1, counts
    for blob in blobs:
        assert counts[("GET", f"{prefix}/blobs/{blob}")] == 1, (blob, counts)
    repeated = {k: n for k, n in counts.items() if n > 1}
    assert repeated == {}, repeated  # signatures, referrers, children: once each as well


def test_fifty_pulls_of_an_uncached_image_fetch_each_object_once(upstream: Upstream, proxy) -> None:
    server = proxy()
    mark = len(upstream.server.log())
    results = asyncio.run(crowd(server.url, "hub/src/crowd"))
    amd64 = upstream.digest("AMD64_MANIFEST")
    assert {digest for digest, _ in results} == {amd64}
    assert all(sorted(blobs) == sorted(upstream.blobs()) for _, blobs in results)
    counts = fetched(upstream.server.log()[mark:], "/v2/src/crowd/")
    assert_each_fetched_once(counts, "/v2/src/crowd", upstream.blobs())
    # the legacy cosign signature, found by its tag and verified, was fetched once too
    assert counts[("GET", f"/v2/src/crowd/manifests/{amd64.replace(':', '-')}.sig")] == 1, counts


@pytest.mark.parametrize("enforced", [True, False], ids=["enforced", "not-enforced"])
def test_fifty_pulls_through_distribution(upstream: Upstream, distribution: Distribution, proxy,
                                          enforced: bool) -> None:
    server = proxy(url=distribution.url, enforce=enforced)  # coalescing does not depend on the gate
    mark = len(distribution.access_log())
    results = asyncio.run(crowd(server.url, "hub/crowd"))
    amd64 = upstream.digest("AMD64_MANIFEST")
    assert {digest for digest, _ in results} == {amd64}
    counts = fetched(distribution.access_log()[mark:], "/v2/crowd/")
    assert_each_fetched_once(counts, "/v2/crowd", upstream.blobs())
    if enforced:  # no referrers API there: the cosign bundle came through the `sha256-<hex>` tag schema
        assert counts[("GET", f"/v2/crowd/manifests/{amd64.replace(':', '-')}")] == 1, counts


def test_the_upstream_token_is_sent_without_a_challenge_per_request(upstream: Upstream, proxy) -> None:
    """Clients in the wild (docker, containerd) remember an upstream's challenge and send its token up front;
    a proxy that does not doubles its requests to the upstream (and to rate limits counting them)."""
    server = proxy()
    mark = len(upstream.server.log())
    [(digest, _)] = asyncio.run(crowd(server.url, "hub/src/crowd", clients=1))
    assert digest == upstream.digest("AMD64_MANIFEST")
    log = upstream.server.log()[mark:]
    assert sum(fetched(log, "/v2/src/crowd/").values()) >= 6  # manifest, signature, referrers, blobs
    assert sum(fetched(log, "/v2/src/crowd/", "401").values()) <= 1
