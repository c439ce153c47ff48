"""`trustreg trust inspect`: in-process on the storage (--config) and through the JSON API (--url)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from registry.api.cli import format_table, split_reference
from registry.cli import main
from tests.auth.conftest import PASSWORDS, auth_config, basic, write_htpasswd
from tests.ui.conftest import ENFORCED, REPO, SignedRepo, make_signed_repo, notary_login, url_of


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["trust", "inspect", *argv])  # the server keeps running meanwhile
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> dict[str, str]:
    lines = out.strip().splitlines()
    assert lines[0].split() == ["TAG", "DIGEST", "TYPE", "PLATFORMS", "SIZE", "PUSHED", "SIGNATURES", "DECISION"]
    return {line.split()[0]: line for line in lines[1:]}


def check_table(out: str, repo: SignedRepo) -> None:
    table = rows(out)
    assert list(table) == ["moved", "signed", "unsigned"]
    assert repo.digests["signed"][:19] in table["signed"]
    assert "notary: signed by targets (" in table["signed"] and table["signed"].endswith("  served")
    assert "linux/amd64" in table["signed"] and " image " in table["signed"]
    assert "notary: unsigned [tag not signed]" in table["unsigned"]
    assert table["unsigned"].endswith("refused: tag not signed")
    assert table["moved"].endswith(f"refused: signed for another digest: targets signs moved as {repo.moved_from}")


@pytest.fixture
def config_file(make_driver, tmp_path: Path) -> Path:
    """A configuration for the same storage the test server uses."""
    path = tmp_path / "inspect.yaml"
    config = {**ENFORCED, "storage": {make_driver.kind: make_driver.config},
              "trust": {"keys": {"insecure_dev_passphrase": True}}}
    path.write_text(yaml.safe_dump(config))
    return path


async def test_config_mode_table_and_json(signed_repo: SignedRepo, config_file: Path, capsys) -> None:
    code, out, _ = await run(capsys, "--config", str(config_file), REPO)
    assert code == 3  # a tag would be refused: non-zero for CI
    check_table(out, signed_repo)
    code, out, _ = await run(capsys, "--config", str(config_file), REPO, "--json")
    api = await (await signed_repo.client.get(f"/api/v1/repositories/{REPO}/tags")).json()
    assert code == 3 and json.loads(out) == api  # the same reports as the API
    code, out, _ = await run(capsys, "--config", str(config_file), f"{REPO}:unsigned", "--json")
    assert code == 3 and [r["tag"] for r in json.loads(out)] == ["unsigned"]
    code, out, _ = await run(capsys, "--config", str(config_file), f"{REPO}:signed")
    assert code == 0 and out.rstrip().endswith("served")


async def test_url_mode_table_and_json(signed_repo: SignedRepo, capsys, monkeypatch) -> None:
    monkeypatch.setattr("registry.api.cli.PAGE", 2)  # follows the Link header across pages
    code, out, _ = await run(capsys, "--url", signed_repo.url, REPO)
    assert code == 3
    check_table(out, signed_repo)
    code, out, _ = await run(capsys, "--url", signed_repo.url, f"{REPO}:signed")
    assert code == 0
    code, out, _ = await run(capsys, "--url", signed_repo.url, f"{REPO}:moved", "--json")
    report = json.loads(out)
    assert code == 3 and len(report) == 1 and report[0]["decision"]["served"] is False
    assert report[0]["signatures"][0]["status"] == "invalid"


async def test_unknowns_exit_1(signed_repo: SignedRepo, config_file: Path, capsys) -> None:
    for where in (["--url", signed_repo.url], ["--config", str(config_file)]):
        code, out, err = await run(capsys, *where, "secure/none")
        assert code == 1 and out == "" and "secure/none is not known" in err
        code, _, err = await run(capsys, *where, f"{REPO}:nope")
        assert code == 1 and "nope is not in repository" in err
    code, _, err = await run(capsys, "--url", "http://127.0.0.1:9", REPO)
    assert code == 1 and "cannot reach" in err


async def test_url_mode_logs_in(registry, tmp_path: Path, capsys, monkeypatch) -> None:
    config = auth_config(write_htpasswd(tmp_path / "htpasswd", PASSWORDS))
    config["projects"]["secure"]["content_trust"] = {"enforce": True}
    client = await registry(config)
    repo = await make_signed_repo(client, url_of(client), tmp_path / "notary", basic("alice"),
                                  notary_login("alice", PASSWORDS["alice"]))
    code, _, err = await run(capsys, "--url", repo.url, REPO)
    assert code == 1 and "401 authentication required" in err
    monkeypatch.setenv("TRUSTREG_PASSWORD", PASSWORDS["carol"])
    code, out, _ = await run(capsys, "--url", repo.url, "--user", "carol", REPO)
    assert code == 3
    check_table(out, repo)
    monkeypatch.setenv("TRUSTREG_PASSWORD", PASSWORDS["stranger"])
    code, _, err = await run(capsys, "--url", repo.url, "--user", "stranger", REPO)
    assert code == 1 and "403 requested access to the resource secure/app is denied" in err


def test_table_format_and_references() -> None:
    report = {"tag": "1.0", "digest": "sha256:" + "a" * 64, "kind": "index",
              "platforms": ["linux/amd64", "linux/arm64"], "size": 1234, "pushed": "2024-01-01T00:00:00Z",
              "signatures": [{"source": "notary", "status": "signed", "signer": "targets/releases",
                              "keyids": ["b" * 64], "expires": "2030-01-01T00:00:00Z", "reason": ""}],
              "decision": {"served": True, "reason": "signed"}}
    lines = format_table([report]).splitlines()
    assert lines[1].split("  ")[0] == "1.0"
    assert lines[1].endswith("notary: signed by targets/releases (bbbbbbbbbbbb) until 2030-01-01T00:00:00Z  served")
    assert "sha256:aaaaaaaaaaaa " in lines[1] and "linux/amd64,linux/arm64" in lines[1]
    assert split_reference("secure/app:1.0") == ("secure/app", "1.0")
    assert split_reference("secure/app") == ("secure/app", None)
    assert split_reference("localhost:5000/app") == ("localhost:5000/app", None)
