"""config/registry.example.yaml documents every key of the schema, and loads as a valid configuration."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from config.loader import load_settings, schema

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "registry.example.yaml"


def schema_keys(node: dict[str, Any], path: str = "") -> set[str]:
    """Every key path the schema allows ('*' for a map's user-chosen names, '[]' for list items)."""
    if "$ref" in node:
        node = schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    keys: set[str] = set()
    for name, sub in node.get("properties", {}).items():
        keys.add(f"{path}{name}")
        keys |= schema_keys(sub, f"{path}{name}.")
    if isinstance(node.get("additionalProperties"), dict):
        keys |= schema_keys(node["additionalProperties"], f"{path}*.")
    if isinstance(node.get("items"), dict):
        keys |= schema_keys(node["items"], f"{path}[].")
    return keys


def test_every_schema_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    keys = schema_keys(schema())
    assert {"auth.token.realm", "http.public_url", "projects.*.members", "storage.s3.session_token"} <= keys
    missing = sorted(k for k in keys if not re.search(rf"(^|[\s{{#-]){re.escape(k.rsplit('.', 1)[-1])}:", text, re.M))
    assert missing == []


def test_the_example_is_a_valid_configuration() -> None:
    settings = load_settings(str(EXAMPLE), environ={})
    assert settings.addr == "127.0.0.1:5000"
    assert settings.raw["projects"]["secure"]["content_trust"]["enforce"] is True
