"""A push that moves a served (signed) tag of an enforced project onto a manifest the gate refuses is
accepted (pushes are never gated) but answered with `Warning: 299 - "..."` and logged: every pull of
the tag is refused from then on, until the new manifest is signed."""

from __future__ import annotations

import logging

from aiohttp import web

from registry.access import PRINCIPAL
from registry.enforcement import GATE
from registry.handlers.common import STORE
from registry.middleware import REQUEST_ID
from storage.references import Digest
from storage.store import Manifest, ManifestUnknownError

log = logging.getLogger("trustreg.trust.gate")


async def served_tags(request: web.Request, name: str, tags: list[str]) -> dict[str, Manifest]:
    """Before a push: the tags of `name` that now resolve to a manifest the gate serves."""
    gate = request.app[GATE]
    if not tags or gate.enforced(name) is None:
        return {}
    served = {}
    for tag in tags:
        try:
            current = await request.app[STORE].get_manifest(name, await request.app[STORE].resolve_tag(name, tag))
        except ManifestUnknownError:
            continue
        if (await gate.decide(name, tag, current)).served:
            served[tag] = current
    return served


async def moved_tag_warning(request: web.Request, name: str, before: dict[str, Manifest], digest: Digest,
                            media_type: str, body: bytes) -> str | None:
    """After a push: the warning (also logged) when it moved a served tag onto a refused manifest."""
    pushed = Manifest(digest, media_type, body)
    for tag, old in before.items():
        if old.digest == digest:
            continue
        verdict = await request.app[GATE].decide(name, tag, pushed)
        if verdict.served:
            continue
        text = (f"{name}:{tag} moved from signed {old.digest} to {digest}, which is not signed: "
                f"pulls of {name}:{tag} are refused until it is signed ({verdict.reason})")
        log.warning("push moved a signed tag: %s", text, extra={
            "repository": name, "reference": tag, "digest": str(digest), "previous_digest": str(old.digest),
            "reason": verdict.reason, "principal": request.get(PRINCIPAL) or "anonymous",
            "request_id": request.get(REQUEST_ID, "-")})
        return text
    return None
