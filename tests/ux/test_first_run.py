"""A new user's first commands: what `serve` prints, `GET /`, read-only commands on an empty directory or
without the trust passphrase, `trust inspect`'s exit status, and configuration errors in words."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.helpers import OCI_MANIFEST, digest_of, image_manifest
from tests.ux.conftest import cli, write_config


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_startup_prints_what_a_user_needs_and_root_redirects_to_the_ui(serve, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {
        "storage": {"filesystem": {"root": str(tmp_path / "store")}},
        "projects": {"secure": {"content_trust": {"enforce": True, "signers": ["targets/releases"]}}},
    })
    server = serve("--config", str(config), env={"TRUSTREG_TRUST_PASSPHRASE": "x"})
    log = server.log()
    assert f"registry:      {server.url}/v2/" in log
    assert f"web UI:        {server.url}/ui/" in log
    assert f"storage:       filesystem {tmp_path / 'store'}" in log
    assert "auth:          none: anyone can push, pull and sign" in log
    assert "content trust: project secure enforced; accepts notary (signers: targets/releases)" in log
    assert "development passphrase" not in log
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{server.url}/", timeout=10)
        raise AssertionError("GET / did not redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 302 and e.headers["Location"] == "/ui/"

    dev = serve(cwd=tmp_path)  # no config: the development passphrase, named as a warning in the summary
    assert "WARNING trustreg: trust keys are encrypted with the public development passphrase; set " \
           "TRUSTREG_TRUST_PASSPHRASE" in dev.log()
    assert "content trust: enforced nowhere" in dev.log()


def test_check_and_gc_without_config_never_create_storage(tmp_path: Path) -> None:
    for args in (["check"], ["gc", "--dry-run"], ["gc"]):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"no registry storage at {tmp_path / 'data'} (the default storage.filesystem.root; pass --config" \
            in result.stderr
        assert not (tmp_path / "data").exists()


def test_read_only_commands_need_no_passphrase_and_inspect_fails_on_a_refusal(serve, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {
        "storage": {"filesystem": {"root": str(tmp_path / "store")}},
        "projects": {"secure": {"content_trust": {"enforce": True}}},
    })
    server = serve("--config", str(config), env={"TRUSTREG_TRUST_PASSPHRASE": "x"})
    config_blob = b"{}"
    urllib.request.urlopen(urllib.request.Request(
        f"{server.url}/v2/secure/app/blobs/uploads/?digest={digest_of(config_blob)}", data=config_blob,
        method="POST"), timeout=10)
    urllib.request.urlopen(urllib.request.Request(
        f"{server.url}/v2/secure/app/manifests/1", data=image_manifest(config_blob, []), method="PUT",
        headers={"Content-Type": OCI_MANIFEST}), timeout=10)
    server.stop()

    inspected = cli("trust", "inspect", "--config", str(config), "secure/app:1", "--json", cwd=tmp_path)
    assert inspected.returncode == 3, inspected.stderr  # refused: CI must see a non-zero exit
    decision = json.loads(inspected.stdout)[0]["decision"]
    assert decision == {"served": False, "reason": "no trust data: no trust data for secure/app"}
    for args in (["check"], ["gc", "--dry-run"]):
        result = cli(*args, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    assert "trust keys not checked (no passphrase)" in cli("check", "--config", str(config), cwd=tmp_path).stdout


def test_configuration_errors_say_what_is_wrong_in_words(tmp_path: Path) -> None:
    bad_addr = write_config(tmp_path / "a.yaml", {"http": {"addr": "localhost"}})
    result = cli("serve", "--config", str(bad_addr), cwd=tmp_path)
    assert result.returncode == 2
    assert "config error at http.addr: expected host:port, e.g. 127.0.0.1:5000, 0.0.0.0:5000 or [::1]:5000 " \
           "(got 'localhost')" in result.stderr

    result = cli("serve", cwd=tmp_path, env={"TRUSTREG__HTTP__ADRESS": "0.0.0.0:5000"})
    assert result.returncode == 2
    assert "config error at http.adress (set by environment variable TRUSTREG__HTTP__ADRESS): unknown key" \
        in result.stderr

    missing = tmp_path / "tls" / "server.crt"
    tls = write_config(tmp_path / "t.yaml", {
        "http": {"addr": "127.0.0.1:0", "tls": {"certificate": str(missing), "key": str(tmp_path / "k.pem")}},
        "storage": {"filesystem": {"root": str(tmp_path / "store")}}})
    result = cli("serve", "--config", str(tls), cwd=tmp_path, env={"TRUSTREG_TRUST_PASSPHRASE": "x"})
    assert result.returncode == 2
    assert f"config error at http.tls.certificate: cannot read {missing}: No such file or directory" in result.stderr


def test_startup_names_proxy_projects_and_webhooks_without_their_secrets(serve, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {
        "storage": {"filesystem": {"root": str(tmp_path / "store")}},
        "projects": {"hub": {"proxy": {"url": "https://registry.example.test:5443", "tag_ttl": 60,
                                       "username": "mirror", "password_env": "HUB_PASSWORD"}}},
        "events": {"endpoints": [{"name": "security", "url": "https://hooks.example.test/T000/B000/s3cr3tt0ken",
                                  "types": ["pull.refused", "artifact.pushed"]}]},
    })
    server = serve("--config", str(config), env={"TRUSTREG_TRUST_PASSPHRASE": "x", "HUB_PASSWORD": "hunter2"})
    log = server.log()
    assert "proxy:         project hub caches https://registry.example.test:5443 (tags re-resolved after 60 s)" in log
    assert "events:        security -> https://hooks.example.test (pull.refused, artifact.pushed)" in log
    assert "s3cr3tt0ken" not in log and "hunter2" not in log
