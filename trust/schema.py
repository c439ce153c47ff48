"""JSON Schemas of Notary metadata (trust/schemas/*.json), loaded once via importlib.resources."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from trust.errors import Malformed

_BASE = "https://trustreg.invalid/schemas/notary/"
SCHEMA_NAMES = ("common", "envelope", "root", "targets", "snapshot", "timestamp")


@cache
def _registry() -> Registry:
    files = resources.files("trust") / "schemas"
    resources_: list[tuple[str, Resource]] = []
    for name in SCHEMA_NAMES:
        contents = json.loads((files / f"{name}.json").read_text(encoding="utf-8"))
        resources_.append((_BASE + f"{name}.json", Resource.from_contents(contents)))
    return Registry().with_resources(resources_)


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of schema `name` (one of SCHEMA_NAMES)."""
    schema = _registry().contents(_BASE + f"{name}.json")
    return Draft202012Validator(schema, registry=_registry())


def validate(name: str, instance: Any, what: str) -> None:
    """Raise Malformed naming the first problem if `instance` does not match schema `name`."""
    error = best_match(validator(name).iter_errors(instance))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise Malformed(f"{what} metadata invalid at {where}: {error.message}")
