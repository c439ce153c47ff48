"""Load and validate the YAML configuration (schema: config/schemas/registry.schema.json).

Unknown keys and wrong types are refused with a message naming the key path, e.g.
`config error at storage.filesystem.rot: unknown key`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

DEFAULT_ADDR = "127.0.0.1:5000"
DEFAULT_ROOT = "./data"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key path."""


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files("config").joinpath("schemas", "registry.schema.json").read_text())


@dataclass
class TLSSettings:
    certificate: str
    key: str


@dataclass
class Settings:
    """Validated configuration with defaults applied; `raw` keeps every section as loaded."""

    host: str = "127.0.0.1"
    port: int = 5000
    tls: TLSSettings | None = None
    workers: int = 1
    client_timeout: float = 300.0
    log_level: str = "info"
    log_format: str = "text"
    storage: dict[str, Any] = field(default_factory=lambda: {"filesystem": {"root": DEFAULT_ROOT}})
    delete_enabled: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    config_dir: str | None = None  # the config file's directory: relative paths in the policy resolve here

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        if extra:
            return ".".join([*parts, extra[0]])
    return ".".join(parts) or "(top level)"


# What a `pattern` in the schema expects, in words (a regex in an error message helps nobody).
PATTERN_WORDS = {
    "addr": "expected host:port, e.g. 127.0.0.1:5000, 0.0.0.0:5000 or [::1]:5000",
    "realm": "expected an http:// or https:// URL, e.g. https://registry.example.com/auth/token",
    "signers": "expected a role: targets or targets/<name>, e.g. targets/releases",
    "root_keys": "expected a root key ID: 64 lowercase hexadecimal digits",
    "projects": "expected a project name: lowercase letters and digits, separated by '.', '_', '__' or '-'",
    "url": "expected the upstream registry's base URL: http(s)://host[:port], e.g. https://registry-1.docker.io",
    "password_env": "expected the name of an environment variable, e.g. HUB_PASSWORD",
    "trust_roots": "expected a trust root name: letters, digits, '.', '_' and '-', starting with a letter or digit",
}


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown key"
    if error.validator == "not" and list(error.absolute_path) == ["storage"]:
        return "choose one storage driver: filesystem or s3, not both"
    if error.validator == "dependentRequired":
        return "username and password_env go together (the password is read from that environment variable)"
    if error.validator in ("pattern", "propertyNames"):
        named = [str(p) for p in error.absolute_path if not isinstance(p, int)]
        for part in reversed(named):
            if part in PATTERN_WORDS:
                return f"{PATTERN_WORDS[part]} (got {error.instance!r})"
    return error.message


def parse_settings(data: dict[str, Any] | None, origins: Mapping[str, str] | None = None) -> Settings:
    """Validate a loaded YAML document and return Settings; raises ConfigError.

    `origins` maps key paths set from the environment to their variables, named in errors."""
    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError("config error: the file must hold a YAML mapping")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = _key_path(first)
        source = next((f" (set by environment variable {name})" for key, name in (origins or {}).items()
                       if path == key or path.startswith(f"{key}.")), "")
        raise ConfigError(f"config error at {path}{source}: {_message(first)}")

    settings = Settings(raw=data)
    http = data.get("http", {})
    host, _, port = http.get("addr", DEFAULT_ADDR).rpartition(":")
    settings.host = host.strip("[]")
    settings.port = int(port)
    if not 0 <= settings.port <= 65535:
        raise ConfigError("config error at http.addr: port out of range")
    if "tls" in http:
        settings.tls = TLSSettings(http["tls"]["certificate"], http["tls"]["key"])
    settings.workers = http.get("workers", 1)
    settings.client_timeout = float(http.get("client_timeout", 300))
    log = data.get("log", {})
    settings.log_level = log.get("level", "info")
    settings.log_format = log.get("format", "text")
    storage = data.get("storage", {})
    settings.delete_enabled = storage.get("delete", True)
    drivers = {k: v for k, v in storage.items() if k != "delete"}
    settings.storage = drivers or {"filesystem": {"root": DEFAULT_ROOT}}
    return settings


ENV_PREFIX = "TRUSTREG__"


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str], origins: dict[str, str] | None = None
) -> dict[str, Any]:
    """Override keys from the environment: `TRUSTREG__HTTP__ADDR=0.0.0.0:5000` sets `http.addr`
    (each value is read as a YAML scalar, so `true` and `8` get their types). Validated like the file;
    `origins` (if given) receives each key path set and the variable that set it."""
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if origins is not None:
            origins[".".join(path)] = name
        try:
            node[path[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"config error at {'.'.join(path)} (from {name}): not a valid value") from e
    return data


def load_settings(path: str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read a YAML config file (None: all defaults), then apply `TRUSTREG__...` overrides."""
    data: Any = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError(f"config error: cannot read {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config error: {path} is not valid YAML: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config error: the file must hold a YAML mapping")
    origins: dict[str, str] = {}
    data = apply_env_overrides(data, os.environ if environ is None else environ, origins)
    settings = parse_settings(data, origins)
    settings.config_dir = os.path.dirname(os.path.abspath(path)) if path is not None else None
    return settings
