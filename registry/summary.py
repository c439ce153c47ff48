"""What the operator needs to see: the start-up summary and what a reload changed in enforcement."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit

from aiohttp import web

from config.loader import Settings
from registry.ops import on_reload
from registry.proxy.config import DEFAULT_TAG_TTL
from trust.policy import CosignRequirement, NotaryRequirement, Policy, Project, Requirement

log = logging.getLogger("trustreg")


def source_text(req: Requirement) -> str:
    """One signature source of a project, e.g. `notary (signers: targets/releases, targets)`."""
    if isinstance(req, NotaryRequirement):
        pinned = f"; root keys pinned: {len(req.root_keys)}" if req.root_keys else ""
        return f"notary (signers: {', '.join(req.signers)}{pinned})"
    if isinstance(req, CosignRequirement):
        return f"cosign (trust root {req.trust_root.name}, at least {req.min_signatures} signature(s))"
    return f"notation (trust root {req.trust_root.name}, identities: {', '.join(req.identities)})"


def _project_text(project: Project) -> str:
    return " or ".join(source_text(r) for r in project.content_trust.require_any)


def enforcement(policy: Policy) -> dict[str, str]:
    """Enforced project -> its accepted sources (`*`: every project not listed, via default_project)."""
    out = {name: _project_text(p) for name, p in sorted(policy.projects.items()) if p.content_trust.enforce}
    if policy.default.content_trust.enforce:
        out["*"] = _project_text(policy.default)
    return out


def storage_text(settings: Settings) -> str:
    if "s3" in settings.storage:
        s3 = settings.storage["s3"]
        where = f"s3://{s3['bucket']}/{s3.get('prefix', '')}"
        return where + (f" at {s3['endpoint_url']}" if s3.get("endpoint_url") else "")
    return "filesystem " + os.path.abspath(settings.storage["filesystem"]["root"])


def auth_text(settings: Settings) -> str:
    auth = settings.raw.get("auth")
    if auth is None:
        return "none: anyone can push, pull and sign (add an `auth` section to restrict)"
    mode = "token (Bearer, /auth/token)" if auth.get("token") is not None else "HTTP Basic"
    users = f"users from {auth['htpasswd']}" if auth.get("htpasswd") else "no users file (auth.htpasswd)"
    return f"{mode}, {users}"


def base_url(settings: Settings) -> str:
    """The URL clients use: `http.public_url`, else the listening address."""
    public = (settings.raw.get("http") or {}).get("public_url")
    if public:
        return public.rstrip("/")
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}"


def startup_lines(settings: Settings, policy: Policy, trust_enabled: bool, dev_passphrase: bool) -> list[str]:
    """The start-up summary, one line per fact."""
    url = base_url(settings)
    enforced = enforcement(policy)
    trust = f"{url} (Notary v1, the registry's own host and port)" if trust_enabled else "off"
    lines = [
        f"registry:      {url}/v2/",
        f"web UI:        {url}/ui/",
        f"storage:       {storage_text(settings)}",
        f"auth:          {auth_text(settings)}",
        f"trust server:  {trust}",
    ]
    if not enforced:
        lines.append("content trust: enforced nowhere (set projects.<name>.content_trust.enforce: true)")
    for name, sources in enforced.items():
        project = "every other project (default_project)" if name == "*" else f"project {name}"
        lines.append(f"content trust: {project} enforced; accepts {sources}")
    for name, body in sorted((settings.raw.get("projects") or {}).items()):
        proxy = (body or {}).get("proxy")
        if proxy:
            lines.append(f"proxy:         project {name} caches {proxy['url']} "
                         f"(tags re-resolved after {proxy.get('tag_ttl', DEFAULT_TAG_TTL)} s)")
    for endpoint in (settings.raw.get("events") or {}).get("endpoints") or []:
        where = urlsplit(endpoint["url"])  # host only: a webhook's path often carries its secret token
        lines.append(f"events:        {endpoint['name']} -> {where.scheme}://{where.hostname}"
                     f"{f':{where.port}' if where.port else ''} ({', '.join(endpoint['types'])})")
    if dev_passphrase:
        lines.append("WARNING: trust keys are encrypted with the public development passphrase; "
                     "set TRUSTREG_TRUST_PASSPHRASE (trust.keys.passphrase_env) for anything but local development")
    return lines


def enforcement_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What a reload changed, per project, in words."""
    changes = [f"project {n} no longer enforced" for n in old if n not in new]
    changes += [f"project {n} now enforced; accepts {new[n]}" for n in new if n not in old]
    changes += [f"project {n} now accepts {new[n]} (was {old[n]})" for n in new if n in old and old[n] != new[n]]
    return [c.replace("project *", "default_project") for c in changes]


def log_reload_changes(app: web.Application, current: Policy) -> None:
    """After each reload, log every change in what is enforced where (one warning per change)."""
    from registry.enforcement import POLICY

    state = {"enforced": enforcement(current)}

    def changed(settings: Settings) -> None:
        new = enforcement(app[POLICY].current)
        for change in enforcement_changes(state["enforced"], new):
            log.warning("reload: content trust: %s", change, extra={"change": change})
        state["enforced"] = new

    on_reload(app, changed)


def log_startup(app: web.Application) -> None:
    """Log the start-up summary (after the listening line), the development-passphrase warning as a warning."""
    from registry.enforcement import POLICY
    from registry.handlers.common import SETTINGS
    from registry.notary_api import passphrase_env

    settings = app[SETTINGS]
    trust = settings.raw.get("trust") or {}
    trust_enabled = trust.get("enabled", True)
    dev = (trust_enabled and not os.environ.get(passphrase_env(settings))
           and bool((trust.get("keys") or {}).get("insecure_dev_passphrase", False)))
    for line in startup_lines(settings, app[POLICY].current, trust_enabled, dev):
        if line.startswith("WARNING: "):
            log.warning("%s", line.removeprefix("WARNING: "))
        else:
            log.info("%s", line)
