"""The `events` section is checked at start: unknown event types (naming the valid ones), duplicate
endpoint names, an unset secret variable and malformed URLs refuse to start, with the key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.loader import ConfigError, parse_settings
from registry.app import create_app
from registry.events.config import parse
from tests.e2e.conftest import REPO


def events(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"events": {"endpoints": list(endpoints)}, "trust": {"keys": {"insecure_dev_passphrase": True}}}


HOOK = {"name": "security", "url": "https://hooks.example.com/trustreg", "types": ["artifact.pushed"]}


def test_unknown_type_refused_at_start_naming_the_valid_ones(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(events({**HOOK, "types": ["artifact.pushed", "image.pulled"]})))
    result = subprocess.run([sys.executable, "-m", "registry.cli", "serve", "--config", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "config error at events.endpoints.0.types.1" in result.stderr, result.stderr
    for valid in ("artifact.pushed", "artifact.deleted", "pull.refused", "signature.added", "trust.published"):
        assert valid in result.stderr


@pytest.mark.parametrize(("endpoint", "where"), [
    ({**HOOK, "url": "hooks.example.com"}, "events.endpoints.0.url"),
    ({**HOOK, "name": "Has Spaces"}, "events.endpoints.0.name"),
    ({**HOOK, "types": []}, "events.endpoints.0.types"),
    ({**HOOK, "colour": "red"}, "events.endpoints.0.colour"),
])
def test_schema_errors_name_the_key(endpoint: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=f"config error at {where}"):
        parse_settings(events(endpoint))


def test_duplicate_names_refused() -> None:
    settings = parse_settings(events(HOOK, {**HOOK, "url": "http://127.0.0.1:9/other"}))
    with pytest.raises(ConfigError, match="events.endpoints.1.name: endpoint name 'security' is used twice"):
        create_app(settings)


def test_unset_secret_variable_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTREG_TEST_HOOK_SECRET", raising=False)
    settings = parse_settings(events({**HOOK, "secret_env": "TRUSTREG_TEST_HOOK_SECRET"}))
    with pytest.raises(ConfigError, match="TRUSTREG_TEST_HOOK_SECRET is not set"):
        create_app(settings)
    monkeypatch.setenv("TRUSTREG_TEST_HOOK_SECRET", "s3cret")
    parsed = parse(settings.raw["events"])
    assert parsed is not None and parsed.endpoints[0].secret == b"s3cret"


def test_defaults_and_backoff() -> None:
    parsed = parse(events(HOOK)["events"], environ={})
    assert parsed is not None
    assert parsed.source is None and parsed.max_pending == 10000 and parsed.timeout_seconds == 10
    assert [parsed.retry.backoff(n) for n in (1, 2, 3, 10, 20)] == [1, 2, 4, 300, 300]
    assert parsed.wanting("artifact.pushed") == ("security",) and parsed.wanting("pull.refused") == ()
