"""The HTML pages (through the HTTP client; the browser tests render them in Chromium): content,
headers, errors, and escaping of everything a pusher controls."""

from __future__ import annotations

import html
import json
import re

from tests.helpers import OCI_MANIFEST, descriptor, digest_of
from tests.ui.conftest import ENFORCED, REPO, SignedRepo, push

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


def row(page: str, tag: str) -> str:
    m = re.search(rf'<tr data-tag="{re.escape(tag)}">(.*?)</tr>', page, re.S)
    assert m, f"no row for {tag}"
    return m.group(1)


async def tag_digest(client, tag: str) -> str:
    return (await (await client.get(f"/api/v1/repositories/open/app/tags/{tag}")).json())["digest"]


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


async def test_repository_page(signed_repo: SignedRepo) -> None:
    resp = await signed_repo.client.get(f"/ui/repositories/{REPO}")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = await resp.text()
    assert "<script" not in page
    assert "content trust enforced" in text_of(page)
    signed, unsigned, moved = row(page, "signed"), row(page, "unsigned"), row(page, "moved")
    assert "notary: signed by targets" in text_of(signed)
    assert text_of(signed).endswith("served")
    assert signed_repo.digests["signed"][:19] in signed and "linux/amd64" in signed and "image" in signed
    assert "notary: unsigned" in text_of(unsigned)
    assert text_of(unsigned).endswith("refused : tag not signed")
    why = f"signed for another digest: targets signs moved as {signed_repo.moved_from}"
    assert "notary: invalid by targets" in text_of(moved)
    assert text_of(moved).endswith(f"refused : {why}")


async def test_manifest_page_and_links(signed_repo: SignedRepo) -> None:
    client = signed_repo.client
    page = await (await client.get(f"/ui/repositories/{REPO}")).text()
    link = re.search(r'<tr data-tag="signed">.*?href="([^"]+)"', page, re.S)
    assert link and "/manifests/" in link.group(1)
    resp = await client.get(html.unescape(link.group(1)))
    assert resp.status == 200
    page = text_of(await resp.text())
    assert signed_repo.digests["signed"] in page
    assert "Pull by digest served" in page and "Layers" in page and "Referrers" in page
    assert "application/vnd.oci.image.config.v1+json" in page


async def test_projects_page(registry) -> None:
    client = await registry({**ENFORCED, "projects": {**ENFORCED["projects"], "pub": {"public": True}}})
    await push(client, "secure/app", "1", "x")
    page = await (await client.get("/ui/")).text()
    secure = re.search(r'<tr data-project="secure">(.*?)</tr>', page, re.S)
    assert secure and "enforced" in text_of(secure.group(1)) and 'href="/ui/repositories/secure/app"' in page
    assert "targets/releases" in text_of(secure.group(1))
    pub = re.search(r'<tr data-project="pub">(.*?)</tr>', page, re.S)
    assert pub and "public" in text_of(pub.group(1)) and "not enforced" in text_of(pub.group(1))
    resp = await client.get("/ui/style.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 302


async def test_error_pages_are_html(registry) -> None:
    client = await registry()
    resp = await client.get("/ui/repositories/secure/none")
    assert resp.status == 404 and resp.content_type == "text/html" and "not known" in await resp.text()
    resp = await client.get(f"/ui/repositories/secure/none/manifests/sha256:{'0' * 64}")
    assert resp.status == 404 and resp.content_type == "text/html"
    resp = await client.get("/ui/repositories/secure/none/manifests/sha256:zz")
    assert resp.status == 400 and resp.content_type == "text/html"


async def test_pagination_link(registry) -> None:
    client = await registry()
    for tag in ("a", "b", "c"):
        await push(client, "open/app", tag, "same")
    page = await (await client.get("/ui/repositories/open/app?n=2")).text()
    assert 'data-tag="a"' in page and 'data-tag="b"' in page and 'data-tag="c"' not in page
    nxt = re.search(r'href="([^"]+)">next page', page)
    assert nxt and html.unescape(nxt.group(1)) == "/ui/repositories/open/app?n=2&last=b"
    page = await (await client.get(html.unescape(nxt.group(1)))).text()
    assert 'data-tag="c"' in page and "next page" not in page


async def test_hostile_content_is_escaped(registry) -> None:
    """Annotations, artifact and media types are the pusher's text: shown, never interpreted."""
    client = await registry()
    digest, _ = await push(client, "open/app", "1", "victim")
    # An artifact manifest of a type the registry does not know: its fields are not validated.
    evil_type = "application/vnd.acme.artifact.v1+json"
    doc = {
        "schemaVersion": 2, "mediaType": evil_type, "artifactType": f"application/x-evil+{HOSTILE}",
        "config": {"mediaType": f"application/vnd.{HOSTILE}", "digest": digest_of(b"{}"), "size": 2},
        "layers": [descriptor(f"text/{HOSTILE}", b"payload", annotations={HOSTILE: HOSTILE})],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1},
        "annotations": {"org.opencontainers.image.title": HOSTILE, HOSTILE: "key too"},
    }
    artifact = json.dumps(doc).encode()
    resp = await client.put("/v2/open/app/manifests/evil", data=artifact, headers={"Content-Type": evil_type})
    assert resp.status == 201, await resp.text()
    # and hostile annotations on a plain OCI image
    await push(client, "open/app", "2", "annotated", annotations={"org.opencontainers.image.description": HOSTILE})

    pages = [
        await (await client.get("/ui/repositories/open/app")).text(),
        await (await client.get(f"/ui/repositories/open/app/manifests/{digest_of(artifact)}")).text(),
        await (await client.get(f"/ui/repositories/open/app/manifests/{digest}")).text(),  # lists the referrer
        await (await client.get(f"/ui/repositories/open/app/manifests/{await tag_digest(client, '2')}")).text(),
    ]
    for page in pages:
        assert HOSTILE not in page
        assert "<script" not in page and "<img" not in page
        assert HOSTILE in text_of(page)  # shown as text
    assert text_of(pages[1]).count(HOSTILE) >= 5  # artifact type, config and layer types, annotations
    api = await (await client.get(f"/api/v1/repositories/open/app/manifests/{digest_of(artifact)}")).json()
    assert api["artifactType"] == f"application/x-evil+{HOSTILE}"  # JSON carries it verbatim
