"""Grammar of repository names, tags and digests (OCI distribution-spec), checked before any of them
becomes part of a storage key."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
MAX_NAME_LENGTH = 255

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}


class InvalidReferenceError(ValueError):
    """A name, tag or digest does not match the spec's grammar (or uses an unsupported algorithm)."""


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


@dataclass(frozen=True)
class Digest:
    """A validated content digest such as `sha256:<64 hex>`."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not DIGEST_RE.fullmatch(value):
            raise InvalidReferenceError(f"invalid digest {value!r}")
        algorithm, _, encoded = value.partition(":")
        size = ALGORITHMS.get(algorithm)
        if size is None:
            raise InvalidReferenceError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != size or not re.fullmatch(r"[a-f0-9]+", encoded):
            raise InvalidReferenceError(f"invalid {algorithm} digest {value!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is meant as a digest (contains ':') rather than a tag."""
    return ":" in reference


def validate_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidReferenceError(f"invalid repository name {name!r}")
    return name


def validate_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise InvalidReferenceError(f"invalid tag {tag!r}")
    return tag
