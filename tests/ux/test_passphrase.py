"""The trust key passphrase: a wrong one refuses to start, `check` reports keys it cannot decrypt, data
made under the development passphrase says how to re-key (and `trustreg trust rekey` does it)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.ux.conftest import cli, write_config

GUN = "secure/app"


def make_trust_key(url: str) -> str:
    """The trust server creates (and stores, encrypted) its timestamp key on first request."""
    with urllib.request.urlopen(f"{url}/v2/{url.split('//')[1]}/{GUN}/_trust/tuf/timestamp.key", timeout=10) as r:
        return json.load(r)["keyval"]["public"]


def test_wrong_passphrase_refuses_to_start_and_check_reports_the_keys(serve, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", {"storage": {"filesystem": {"root": str(tmp_path / "data")}}})
    server = serve("--config", str(config), env={"TRUSTREG_TRUST_PASSPHRASE": "right"})
    make_trust_key(server.url)
    server.stop()

    wrong = serve("--config", str(config), env={"TRUSTREG_TRUST_PASSPHRASE": "wrong"}, ready=False)
    assert wrong.proc.wait(timeout=30) == 2
    assert "the passphrase in TRUSTREG_TRUST_PASSPHRASE does not decrypt the trust server's keys" in wrong.log()

    checked = cli("check", "--config", str(config), cwd=tmp_path, env={"TRUSTREG_TRUST_PASSPHRASE": "wrong"})
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "undecryptable-key: the passphrase in TRUSTREG_TRUST_PASSPHRASE does not decrypt this trust key" \
        in checked.stdout
    assert "1 trust keys: 1 problems" in checked.stdout
    ok = cli("check", "--config", str(config), cwd=tmp_path, env={"TRUSTREG_TRUST_PASSPHRASE": "right"})
    assert ok.returncode == 0 and "1 trust keys: 0 problems" in ok.stdout


def test_development_data_served_with_a_real_passphrase_says_how_to_rekey(serve, tmp_path: Path) -> None:
    dev = serve(cwd=tmp_path)  # like ./scripts/serve.sh: no config, ./data, the development passphrase
    make_trust_key(dev.url)
    dev.stop()
    assert "trust keys are encrypted with the public development passphrase" in dev.log()

    config = write_config(tmp_path / "c.yaml", {"storage": {"filesystem": {"root": str(tmp_path / "data")}}})
    real = {"TRUSTREG_TRUST_PASSPHRASE": "a real passphrase"}
    refused = serve("--config", str(config), env=real, ready=False)
    assert refused.proc.wait(timeout=30) == 2
    assert "were encrypted with the public development passphrase" in refused.log()
    assert "trustreg trust rekey --config <this config> --from-dev" in refused.log()

    rekeyed = cli("trust", "rekey", "--config", str(config), "--from-dev", cwd=tmp_path, env=real)
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert "re-encrypted 1 trust keys under the passphrase in TRUSTREG_TRUST_PASSPHRASE" in rekeyed.stdout

    checked = cli("check", "--config", str(config), cwd=tmp_path, env=real)
    assert checked.returncode == 0 and "1 trust keys: 0 problems" in checked.stdout, checked.stdout
    served = serve("--config", str(config), env=real)
    assert make_trust_key(served.url)
    assert "development passphrase" not in served.log()
