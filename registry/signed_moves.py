"""A push that moves a tag the content-trust gate serves (signed) onto a manifest it would refuse
(unsigned) is accepted, in an enforced project without an `immutable_tags` rule for that tag
(registry.immutable refuses it first), but answered with a `Warning` header and logged: from now on
pulls of that tag are refused until the new manifest is signed."""

from __future__ import annotations

import logging

from aiohttp import web

from registry.access import PRINCIPAL
from storage.references import Digest
from storage.store import Manifest, ManifestUnknownError, RegistryStore

log = logging.getLogger("trustreg.trust.gate")


async def unsigning_moves(
    request: web.Request, st: RegistryStore, name: str, tags: list[str], new: Manifest
) -> dict[str, Digest]:
    """The tags among `tags` this push moves from a served manifest onto one the gate would refuse
    (tag -> the digest it pointed at). Called before the push is stored."""
    from registry.enforcement import GATE  # enforcement wires into the manifest handlers: import late

    gate = request.app.get(GATE)
    if gate is None or gate.enforced(name) is None:
        return {}
    moves: dict[str, Digest] = {}
    for tag in tags:
        try:
            old_digest = await st.resolve_tag(name, tag)
            if old_digest == new.digest:
                continue
            old = await st.get_manifest(name, old_digest)
        except ManifestUnknownError:
            continue
        if (await gate.decide(name, tag, old)).served and not (await gate.decide(name, tag, new)).served:
            moves[tag] = old_digest
    return moves


def warning_header(request: web.Request, name: str, moves: dict[str, Digest], new: Digest) -> dict[str, str]:
    """Log each move and return the `Warning` header for the response ({} without moves)."""
    if not moves:
        return {}
    principal = request.get(PRINCIPAL) or "anonymous"
    for tag, old in moves.items():
        log.warning("signed tag moved to an unsigned manifest: %s:%s %s -> %s by %s", name, tag, old, new, principal)
    tags = ", ".join(sorted(moves))
    text = (f"signed tag {tags} now points at {new}, which is not signed: "
            "pulls of it are refused until it is signed")
    return {"Warning": f'299 trustreg "{text}"'}
