"""The web UI in headless Chromium, against the real `trustreg serve` over TLS, with signatures made
by the real notary CLI (verified TLS): an enforced project with a signed tag, an unsigned tag and a
tag moved after signing. Screenshots are saved under artifacts/ (gitignored).

Chromium missing: skipped, unless TRUSTREG_REQUIRE_E2E=1 (then a failure).
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp
import pytest

from tests.auth.conftest import PASSWORDS, auth_config, basic, write_htpasswd
from tests.e2e.conftest import REPO as ROOT
from tests.e2e.conftest import Server, certs, require, trustreg  # noqa: F401  (fixtures)
from tests.ui.conftest import ENFORCED, REPO, SignedRepo, make_signed_repo, notary_login

pytestmark = pytest.mark.e2e
ARTIFACTS = ROOT / "artifacts"


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with the flags this machine needs (no outside networking, throwaway CA)."""
    require("chromium")
    profile = tempfile.mkdtemp(prefix="trustreg-chromium-")
    flags = ["--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--ignore-certificate-errors"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")
    try:
        result = subprocess.run(["chromium", *flags, *args], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def dump_dom(url: str) -> str:
    return chromium("--dump-dom", url).stdout


def screenshot(url: str, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    chromium(f"--screenshot={path}", "--window-size=1280,900", "--hide-scrollbars", url)
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def cells(dom: str, tag: str) -> str:
    m = re.search(rf'<tr data-tag="{re.escape(tag)}">(.*?)</tr>', dom, re.S)
    assert m, f"no row for {tag} in:\n{dom[:3000]}"
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(1)))).strip()


def signed_repo_on(server: Server, ca: Path, workdir: Path, headers: dict[str, str] | None = None,
                   notary_env: dict[str, str] | None = None) -> SignedRepo:
    async def go() -> SignedRepo:
        async with aiohttp.ClientSession(server.url, connector=aiohttp.TCPConnector(ssl=False)) as session:
            return await make_signed_repo(session, server.url, workdir, headers, notary_env, ca=ca)

    return asyncio.run(go())


def tls(certs: Path) -> dict[str, dict[str, str]]:  # noqa: F811
    return {"tls": {"certificate": str(certs / "server.crt"), "key": str(certs / "server.key")}}


def test_repository_page_in_chromium(trustreg, certs: Path, tmp_path: Path) -> None:  # noqa: F811
    require("chromium", "notary")
    server = trustreg({**ENFORCED, "http": tls(certs)})
    repo = signed_repo_on(server, certs / "ca.crt", tmp_path / "notary")

    dom = dump_dom(f"{server.url}/ui/repositories/{REPO}")
    assert "<h1>secure/app</h1>" in dom and "enforced" in dom
    signed, unsigned, moved = cells(dom, "signed"), cells(dom, "unsigned"), cells(dom, "moved")
    assert "notary: signed by targets" in signed and signed.endswith("served")
    assert "notary: unsigned" in unsigned and unsigned.endswith("refused : tag not signed")
    why = f"signed for another digest: targets signs moved as {repo.moved_from}"
    assert "notary: invalid by targets" in moved and moved.endswith(f"refused : {why}")
    shot = screenshot(f"{server.url}/ui/repositories/{REPO}", "ui-repository.png")
    print(f"screenshot: {shot}")

    dom = dump_dom(f"{server.url}/ui/repositories/{REPO}/manifests/{repo.digests['signed']}")
    assert repo.digests["signed"] in dom and "Layers" in dom and "Referrers" in dom
    screenshot(f"{server.url}/ui/repositories/{REPO}/manifests/{repo.digests['signed']}", "ui-manifest.png")
    dom = dump_dom(f"{server.url}/ui/")
    assert 'data-project="secure"' in dom
    screenshot(f"{server.url}/ui/", "ui-projects.png")


def test_login_in_chromium(trustreg, certs: Path, tmp_path: Path) -> None:  # noqa: F811
    """Anonymous: the 401 page; with the registry's credentials (Basic): the tags and decisions."""
    require("chromium", "notary")
    config = auth_config(write_htpasswd(tmp_path / "htpasswd", PASSWORDS))
    config["projects"]["secure"]["content_trust"] = {"enforce": True}
    server = trustreg({**config, "http": tls(certs)})
    signed_repo_on(server, certs / "ca.crt", tmp_path / "notary", basic("alice"),
                   notary_login("alice", PASSWORDS["alice"]))
    dom = dump_dom(f"{server.url}/ui/repositories/{REPO}")
    assert 'data-tag="signed"' not in dom  # headless Chromium cancels the Basic prompt: nothing shown
    dom = dump_dom(f"https://carol:{PASSWORDS['carol']}@{server.addr}/ui/repositories/{REPO}")
    assert "signed in as" in dom and "carol" in dom
    assert cells(dom, "signed").endswith("served") and "refused" in cells(dom, "unsigned")
