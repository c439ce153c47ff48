"""Immutable tags (`projects.<p>.immutable_tags: [globs]`): a tag matching a rule, once pushed, is
never moved nor deleted (409 `DENIED` naming the rule).

Signatures and attestations always stay writable: cosign's `<alg>-<hex>.sig`/`.att`/`.sbom` tags and
the referrers tag schema's `<alg>-<hex>` index are rewritten whenever a signature is added (a second
cosign signature updates the `.sig` tag), so they are never protected, whatever the rules say.
Referrers pushed by digest move no tag and are never concerned.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from registry.errors import RegistryError
from storage.references import Digest
from storage.store import ManifestUnknownError, RegistryStore
from trust.policy import project_of

# cosign's legacy signature/attestation/SBOM tags and the referrers tag schema (OCI distribution-spec 1.1)
SIGNATURE_TAG = re.compile(r"^(sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128})(\.sig|\.att|\.sbom)?$")


def project_config(raw: Mapping[str, Any], repository: str) -> Mapping[str, Any]:
    """The configuration of `repository`'s project (`default_project` when it has none of its own)."""
    projects = raw.get("projects") or {}
    return projects.get(project_of(repository)) or raw.get("default_project") or {}


def protecting_rule(raw: Mapping[str, Any], repository: str, tag: str) -> str | None:
    """The first `immutable_tags` glob of the project matching `tag` (None: the tag may move)."""
    if SIGNATURE_TAG.match(tag):
        return None
    for rule in project_config(raw, repository).get("immutable_tags") or ():
        if fnmatch.fnmatchcase(tag, rule):
            return rule
    return None


def _denied(repository: str, tag: str, rule: str, action: str, current: Digest | None) -> RegistryError:
    detail: dict[str, Any] = {"repository": repository, "tag": tag, "rule": rule}
    if current is not None:
        detail["digest"] = str(current)
    return RegistryError(
        "DENIED", f"tag {tag} is immutable (rule {rule!r}): it cannot be {action}", detail, status=409
    )


async def _current(st: RegistryStore, repository: str, tag: str) -> Digest | None:
    try:
        return await st.resolve_tag(repository, tag)
    except ManifestUnknownError:
        return None


async def check_push(
    raw: Mapping[str, Any], st: RegistryStore, repository: str, tags: list[str], digest: Digest
) -> list[str]:
    """Refuse a push that would move a protected tag; returns the protected tags among `tags` (the
    store writes them create-only, so two first pushes racing cannot both win)."""
    protected = []
    for tag in tags:
        rule = protecting_rule(raw, repository, tag)
        if rule is None:
            continue
        current = await _current(st, repository, tag)
        if current is not None and current != digest:
            raise _denied(repository, tag, rule, "moved", current)
        protected.append(tag)
    return protected


async def check_delete(
    raw: Mapping[str, Any], st: RegistryStore, repository: str, tag: str | None, digest: Digest | None
) -> None:
    """Refuse deleting a protected tag, or a manifest a protected tag points at."""
    if tag is not None:
        rule = protecting_rule(raw, repository, tag)
        current = await _current(st, repository, tag) if rule is not None else None
        if rule is not None and current is not None:  # an absent tag gets its 404
            raise _denied(repository, tag, rule, "deleted", current)
        return
    if not project_config(raw, repository).get("immutable_tags"):
        return
    for other in await st.list_tags(repository):
        rule = protecting_rule(raw, repository, other)
        if rule is not None and await _current(st, repository, other) == digest:
            raise _denied(repository, other, rule, "deleted", digest)


def moved_error(repository: str, tag: str, raw: Mapping[str, Any], current: Digest | None) -> RegistryError:
    """The refusal for a protected tag another push created first (found by the store's create-only write)."""
    return _denied(repository, tag, protecting_rule(raw, repository, tag) or "?", "moved", current)
