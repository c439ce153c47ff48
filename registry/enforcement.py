"""Wires the content-trust gate (trust.gate) into manifest GET/HEAD: refusals become 412 (registry.refusal).

A request whose credential grants push on the repository (the account's roles and, in token mode,
the token's scope) is exempt for HEAD and for GET by digest
(build and signing tools: docker, `cosign sign`, `notation sign` read the subject before pushing). A
refused HEAD that came without credentials is answered with a 401 challenge where every client can
answer one (token auth), so a signing tool that authenticates only when challenged gets its turn; a
refused exemptible read by notation or cosign (by their User-Agent) whose token lacks push, from an
account that may push, is answered with an `insufficient_scope` challenge for pull,push: they ask
for a pull token first, and an honest runtime is never invited to escalate.
The policy (with its trust roots' key and certificate files, relative to the config file) is
loaded at start and on reload; an invalid one refuses to start / keeps the running one."""

from __future__ import annotations

import logging

from aiohttp import web

from config.loader import Settings
from registry.access import AUTHORIZER, PRINCIPAL, is_signing_tool
from registry.events import hooks as events
from registry.handlers.common import SETTINGS, STORE
from registry.handlers.manifests import MANIFEST_GATE
from registry.metrics import TRUST_DECISIONS, VERIFIER_CACHE, child
from registry.middleware import REQUEST_ID
from registry.ops import on_reload
from registry.refusal import Refusal
from storage.store import Manifest
from trust.collection import StoredTrustData
from trust.gate import ContentTrustGate, TrustDataSource
from trust.policy import Policy, PolicyHolder

log = logging.getLogger("trustreg.trust.gate")
# Verified trust data is confirmed against storage at most this often per repository (publishes through
# this process invalidate at once); bounds how long another process's publish takes to be seen.
TRUST_RECHECK_SECONDS = 0.1
PULL_PUSH = frozenset({"pull", "push"})
GATE = web.AppKey("content_trust_gate", ContentTrustGate)
POLICY = web.AppKey("policy", PolicyHolder)


class NoTrustServer:
    """Trust source when the trust server is disabled: nothing is signed (enforcement fails closed)."""

    async def current_etag(self, repository: str) -> str | None:
        return None

    async def load(self, repository: str) -> tuple[str, StoredTrustData] | None:
        return None


def _reason_label(reason: str) -> str:
    return reason.split(":", 1)[0] if reason else "signed"


def setup(app: web.Application, source: TrustDataSource | None) -> ContentTrustGate:
    """Create the policy and the gate, hook them into manifest reads and configuration reloads."""
    settings = app[SETTINGS]
    policy = Policy.from_config(settings.raw, settings.config_dir)
    policy.load_trust_roots()  # PolicyError (a ConfigError) names the bad key path and file
    holder = PolicyHolder(policy)
    gate = ContentTrustGate(
        app[STORE], source or NoTrustServer(), holder,
        on_cache=lambda hit: child(VERIFIER_CACHE, "hit" if hit else "miss").inc(),
        recheck=TRUST_RECHECK_SECONDS,
    )
    app[POLICY] = holder
    app[GATE] = gate

    def reload(settings: Settings) -> None:
        holder.reload(settings.raw, settings.config_dir)  # raises (keeping the old policy) if invalid

    on_reload(app, reload)

    served_signed = child(TRUST_DECISIONS, "served", "signed")

    async def check(request: web.Request, name: str, tag: str | None, manifest: Manifest) -> None:
        if gate.enforced(name) is None:
            return
        if gate.remembered(name, tag, manifest):  # a repeated pull of a signed image
            served_signed.inc()
            return
        principal = request.get(PRINCIPAL)
        # Signing tools read the subject first (cosign: GET+HEAD by digest; notation, docker: HEAD).
        # The exemption follows what this request's credential grants, not what its account could get.
        push_holder_read = (
            (request.method == "HEAD" or tag is None)
            and principal is not None  # without authentication nobody is a push holder
            and await request.app[AUTHORIZER].credential_grants(request, name, "push")
        )
        verdict = await gate.decide(name, tag, manifest, push_holder_head=push_holder_read)
        label = verdict.code or _reason_label(verdict.reason)
        child(TRUST_DECISIONS, "served" if verdict.served else "refused", label).inc()
        if verdict.served:
            return
        exemptible = request.method == "HEAD" or tag is None
        if exemptible and is_signing_tool(request):
            # notation and cosign read the subject with whatever token the first challenge asked for
            # (pull) and ask for push only when they push. Invite them to show push instead: the
            # exemption still follows the credential, and a runtime (never invited) keeps its
            # pull-only token even when its account could push.
            challenge = request.app[AUTHORIZER].challenge(request, name, PULL_PUSH)
            if challenge is not None:
                raise challenge
        if request.method == "HEAD" and principal is None:
            # Clients that authenticate only when challenged: in a public project a refusal would end
            # them before they show who they are. Challenge instead, where every client can answer
            # (token auth); pullers that come back with an anonymous token get the refusal below.
            challenge = request.app[AUTHORIZER].challenge(request, name)
            if challenge is not None:
                raise challenge
        log.warning(
            "content trust refused %s %s:%s (%s) for %s: %s",
            request.method, name, tag or manifest.digest, manifest.digest, principal or "anonymous", verdict.reason,
            extra={"repository": name, "reference": tag or str(manifest.digest), "digest": str(manifest.digest),
                   "reason": verdict.reason, "principal": principal or "anonymous",
                   "request_id": request.get(REQUEST_ID, "-")},
        )
        await events.pull_refused(request, name, tag, str(manifest.digest), verdict.reason, verdict.message, manifest)
        raise Refusal(verdict.message, verdict.reason, verdict.detail)

    app[MANIFEST_GATE] = check
    return gate
