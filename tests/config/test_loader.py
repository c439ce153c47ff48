"""Configuration loading: defaults, validation messages naming the key path, env overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.loader import ConfigError, load_settings, parse_settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    s = parse_settings({})
    assert s.addr == "127.0.0.1:5000"
    assert s.storage == {"filesystem": {"root": "./data"}}
    assert s.delete_enabled is True and s.tls is None


def test_example_config_is_valid() -> None:
    s = load_settings(str(REPO / "config" / "registry.example.yaml"), environ={})
    assert s.addr == "127.0.0.1:5000"
    assert s.raw["projects"]["secure"]["content_trust"]["enforce"] is True


@pytest.mark.parametrize("doc, message", [
    ({"http": {"adr": "x"}}, "config error at http.adr: unknown key"),
    ({"storage": {"filesystem": {"root": 5}}}, "config error at storage.filesystem.root"),
    ({"storage": {"delete": "yes"}}, "config error at storage.delete"),
    ({"http": {"addr": "no-port"}}, "config error at http.addr"),
    ({"storage": {"filesystem": {}, "s3": {"bucket": "abc"}}}, "one storage driver"),
    ({"projects": {"secure": {"content_trust": {"enforce": "yes"}}}}, "projects.secure.content_trust.enforce"),
    ({"projects": {"Bad Name": {}}}, "config error at projects"),
    ({"storage": {"s3": {"bucket": "abc", "part_size": 1}}}, "storage.s3.part_size"),
    ({"auth": {"token": {"realm": "registry.example.com/auth/token"}}}, "config error at auth.token.realm"),
])
def test_invalid_configs_name_the_key(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(doc)
    assert message in str(info.value)


def test_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"http": {"addr": "127.0.0.1:5000"}}))
    s = load_settings(str(path), environ={"TRUSTREG__HTTP__ADDR": "0.0.0.0:6000",
                                          "TRUSTREG__STORAGE__DELETE": "false", "OTHER": "x"})
    assert s.addr == "0.0.0.0:6000" and s.delete_enabled is False
    with pytest.raises(ConfigError, match="http.workers"):
        load_settings(str(path), environ={"TRUSTREG__HTTP__WORKERS": "many"})


def test_serve_refuses_bad_config_and_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("storage:\n  filesystem:\n    rot: /tmp/x\n")
    result = subprocess.run([sys.executable, "-m", "registry.cli", "serve", "--config", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "config error at storage.filesystem.rot: unknown key" in result.stderr


def test_missing_trust_passphrase_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"http": {"addr": "127.0.0.1:0"},
                                    "storage": {"filesystem": {"root": str(tmp_path / "d")}}}))
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "registry.cli", "serve", "--config", str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "TRUSTREG_TRUST_PASSPHRASE" in result.stderr
