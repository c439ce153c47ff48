"""The UI and /api/v1 on a proxy project, against the real servers: the project is marked as a proxy of
its upstream (never its credentials); each cached tag shows its upstream, last resolution and the gate's
verdict; a tag refused upstream is listed with the gate's reason."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO, Server
from tests.e2e.test_signatures import CAROL, cosign_sign
from tests.proxy_e2e.conftest import Upstream, push

ACCEPT = "application/vnd.oci.image.manifest.v1+json"


def get(server: Server, path: str, accept: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(f"{server.url}{path}", headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api(server: Server, path: str) -> Any:
    status, body = get(server, f"/api/v1{path}")
    assert status == 200, body
    assert CAROL[0].encode() not in body and CAROL[1].encode() not in body  # no credentials, ever
    return json.loads(body)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_api_and_ui_show_the_proxy_and_each_cached_tag(upstream: Upstream, proxy, test_image: Path) -> None:
    server = proxy(tag_ttl=1)
    amd64 = upstream.digest("AMD64_MANIFEST")
    before = datetime.now(UTC).replace(microsecond=0)
    assert get(server, "/v2/hub/src/signed/manifests/v1", ACCEPT)[0] == 200
    # src/moving:v1 is cached while signed, then moved upstream to the unsigned image
    push(upstream.env, f"oci:{test_image}/oci:v1", "src/moving")
    cosign_sign(upstream.env, "ci", f"{upstream.server.addr}/src/moving@{amd64}")
    assert get(server, "/v2/hub/src/moving/manifests/v1", ACCEPT)[0] == 200
    push(upstream.env, f"oci:{upstream.unsigned_layout}:v1", "src/moving")

    projects = {p["name"]: p for p in api(server, "/projects")}
    assert projects["hub"]["proxy"] == {"url": upstream.server.url, "tag_ttl": 1}
    assert "proxy" not in projects["local"]
    assert projects["hub"]["repositories"] == ["hub/src/moving", "hub/src/signed"]

    [report] = api(server, "/repositories/hub/src/signed/tags")
    assert report["tag"] == "v1" and report["digest"] == amd64
    assert report["decision"] == {"served": True, "reason": "signed"}
    resolution = report["proxy"]
    assert resolution["upstream"] == f"{upstream.server.url}/src/signed:v1"
    assert resolution["digest"] == amd64
    assert resolution["verdict"] == "accepted" and resolution["refused"] is False
    first = when(resolution["resolved"])
    assert before <= first <= datetime.now(UTC)
    assert when(resolution["expires"]) == first + timedelta(seconds=1)
    assert api(server, "/repositories/hub/src/signed/tags/v1")["proxy"] == resolution

    # after tag_ttl the next pull re-resolves the tag upstream: the last resolution moves on
    time.sleep(2.1)
    assert get(server, "/v2/hub/src/signed/manifests/v1", ACCEPT)[0] == 200
    again = api(server, "/repositories/hub/src/signed/tags/v1")["proxy"]
    assert when(again["resolved"]) >= first + timedelta(seconds=2) and again["verdict"] == "accepted"

    # the moved tag, once re-resolved: refused, no longer cached, its last resolution and reason shown
    assert get(server, "/v2/hub/src/moving/manifests/v1", ACCEPT)[0] == 412
    assert api(server, "/repositories/hub/src/moving/tags") == []
    listing = api(server, "/repositories/hub/src/moving/proxy")
    assert listing["proxy"] == projects["hub"]["proxy"]
    [refused] = listing["refused"]
    assert refused["tag"] == "v1" and refused["digest"] == upstream.unsigned and refused["refused"] is True
    assert refused["upstream"] == f"{upstream.server.url}/src/moving:v1"
    assert "no signature found" in refused["verdict"]
    assert api(server, "/repositories/hub/src/signed/proxy")["refused"] == []
    status, body = get(server, "/api/v1/repositories/local/app/proxy")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"

    # the UI: the project marked, the tag's upstream and verdict, the refused tag with its reason
    index = get(server, "/ui/")[1].decode()
    hub_row = index.split('data-project="hub"', 1)[1].split("</tr>", 1)[0]
    assert "proxy</span> of <code>" + upstream.server.url in hub_row
    assert "proxy-badge" not in index.split('data-project="local"', 1)[1].split("</tr>", 1)[0]
    page = get(server, "/ui/repositories/hub/src/signed")[1].decode()
    row = page.split('data-tag="v1"', 1)[1].split("</tr>", 1)[0]
    assert f"{upstream.server.url}/src/signed:v1" in row and 'verdict">accepted' in row
    assert again["resolved"] in row
    refused_page = get(server, "/ui/repositories/hub/src/moving")[1].decode()
    table = refused_page.split('id="refused"', 1)[1]
    assert "src/moving:v1" in table and "no signature found" in table
    for text in (index, page, refused_page):
        assert CAROL[0] not in text and CAROL[1] not in text

    # `trustreg trust inspect --url`: the same resolution in its UPSTREAM column
    inspect = subprocess.run([sys.executable, "-m", "registry.cli", "trust", "inspect", "--url", server.url,
                              "hub/src/signed"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert inspect.returncode == 0, inspect.stderr
    header, row = inspect.stdout.splitlines()
    assert "UPSTREAM" in header.split() and row.startswith("v1 ")
    assert f"{upstream.server.url}/src/signed:v1 at {again['resolved']}: accepted" in row
