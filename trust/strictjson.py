"""Read JSON documents the way the strictest client (Go's encoding/json) reads them, or refuse them.

Manifests and signature artifacts are judged here and then run by containerd, docker, podman and
skopeo, all of which decode with Go's encoding/json. Python's `json` reads some documents
differently, and any difference lets a document mean one thing to the gate and another to a runtime:
- Go matches object keys to struct fields case-insensitively (Unicode simple folding: `Layers`,
  `LAYERS`, `layerſ` and `layers` are one field), the last occurrence winning; Python keeps exact
  keys. Refused: two keys of one object that fold alike (exact duplicates included), and, outside
  free-form maps, a key that folds to a known field name without being spelled exactly like it;
- Go rejects NaN/Infinity, a byte-order mark and non-UTF-8 encodings (Python's `json.loads(bytes)`
  accepts UTF-16/32 and a BOM); Go turns a lone surrogate escape (`\\ud800`) into U+FFFD while Python
  keeps it: all refused;
- numbers: a size or version that Go decodes into an int64 must be an integer literal in range
  (`1.0`, `1e3` or 2**63 fail in Go): `is_int64` says so for the validators.
No library offers this (the standard and third-party parsers either keep the last duplicate or only
flag exact duplicates), hence this module. Folding uses `str.casefold`, which folds at least every
character Go's simple folding does onto the ASCII field names (only `ſ` and the Kelvin sign do).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

INT64_MAX = (1 << 63) - 1


class AmbiguousJSONError(ValueError):
    """The document is not JSON that Go and Python read alike; the message says where and why."""


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class Fields:
    """Known field names (exact spelling) of a document's structs, and the keys whose values are
    free-form maps (annotations, labels), where only folded duplicates are refused."""

    def __init__(self, names: Iterable[str], maps: Iterable[str] = ()) -> None:
        self.exact = frozenset(names)
        self.by_fold = {n.casefold(): n for n in names}
        self.maps = frozenset(maps)


def loads(data: bytes, fields: Fields) -> Any:
    """Decode `data` (UTF-8 JSON) or raise AmbiguousJSONError / ValueError (not JSON at all).

    Written for the push path's budget: duplicates and folded duplicates are caught while decoding;
    the (rare) objects with a key spelled like a known field in another case are set aside and judged
    after decoding, by where they sit (a free-form map may have such keys); strings are searched for
    lone surrogates only if the text has a surrogate escape at all."""
    if data[:3] == b"\xef\xbb\xbf":
        raise AmbiguousJSONError("a byte-order mark is not JSON")
    text = data.decode("utf-8")  # strict: UnicodeDecodeError (a ValueError) for anything else
    suspects: set[int] = set()
    exact, by_fold = fields.exact, fields.by_fold

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            raise AmbiguousJSONError(f"duplicate key {_duplicate(items)!r}")
        folded = {k.casefold() for k in obj}
        if len(folded) != len(obj):
            raise AmbiguousJSONError(f"keys that differ only by case: {sorted(obj)[:10]}")
        if not exact.issuperset(obj) and any(k not in exact and k.casefold() in by_fold for k in obj):
            suspects.add(id(obj))
        return obj

    doc = json.loads(text, object_pairs_hook=pairs, parse_constant=_constant)
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if suspects or surrogates:
        _check(doc, fields, suspects, surrogates)
    return doc


def _duplicate(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key[:100]
        seen.add(key)
    return ""


def _constant(name: str) -> Any:
    raise AmbiguousJSONError(f"{name} is not JSON")


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check(doc: Any, fields: Fields, suspects: set[int], surrogates: bool) -> None:
    """Walk the document iteratively (its depth is bounded by the caller, not by our stack)."""
    stack: list[tuple[Any, str, bool]] = [(doc, "", False)]
    while stack:
        value, where, free_form = stack.pop()
        if isinstance(value, str):
            if surrogates and _has_lone_surrogate(value):
                raise AmbiguousJSONError(f"{where or '(root)'}: lone surrogate escape in a string")
        elif isinstance(value, dict):
            for key, child in value.items():
                if surrogates and _has_lone_surrogate(key):
                    raise AmbiguousJSONError(f"{where or '(root)'}: lone surrogate escape in a key")
                if not free_form and id(value) in suspects:
                    known = fields.by_fold.get(key.casefold())
                    if known is not None and known != key:
                        raise AmbiguousJSONError(f"{where}/{key[:100]}: key differs from field {known!r} "
                                                 "only by case")
                stack.append((child, f"{where}/{key[:100]}", not free_form and key in fields.maps))
        elif isinstance(value, list):
            stack.extend((child, f"{where}/{i}", False) for i, child in enumerate(value))


def is_int64(value: Any) -> bool:
    """An integer literal Go decodes into an int64 (not a bool, not a float such as 1.0)."""
    return isinstance(value, int) and not isinstance(value, bool) and -INT64_MAX - 1 <= value <= INT64_MAX


# The fields of OCI image manifests and indexes, Docker schema 2 manifests and lists, descriptors and
# platforms (image-spec v1.1; distribution's schema2/manifestlist).
MANIFEST_FIELDS = Fields(
    ("schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject",
     "annotations", "digest", "size", "urls", "data", "platform", "architecture", "os", "os.version",
     "os.features", "variant", "features"),
    maps=("annotations",),
)
# An image configuration (image-spec config.md), as runtimes decode it.
CONFIG_FIELDS = Fields(
    ("created", "author", "architecture", "os", "os.version", "os.features", "variant", "config",
     "rootfs", "history", "type", "diff_ids", "created_by", "comment", "empty_layer", "User",
     "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal",
     "ArgsEscaped", "Healthcheck", "OnBuild", "Shell", "container_config", "container", "docker_version"),
    maps=("Labels", "ExposedPorts", "Volumes"),
)
# No struct fields to confuse: only duplicates, folded duplicates, and encoding are checked.
ANY_FIELDS = Fields(())
