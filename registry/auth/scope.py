"""Scopes and the access a request needs.

- A scope is `type:name:actions`, e.g. `repository:secure/alpine:pull,push` or `registry:catalog:*`.
  Names may contain ':' (a GUN such as `127.0.0.1:5000/secure/alpine`), so the type is the text
  before the first ':' and the actions the text after the last one.
- `required_access(method, path)` maps a request to what it needs, from the path alone (the same
  route shapes as `registry.app`): pull for reads, push for writes and every upload call, delete for
  manifest/blob DELETE; the catalog needs `registry:catalog:*`; `/v2/` needs any principal.
- Trust API paths `/v2/<gun>/_trust/...` are governed by the repository the GUN names, and
  `gun_repository` is the one mapping from a GUN to a repository: authorization, token scopes and the
  trust server all use it, with the same accepted server names for one request. A GUN that does not
  map needs nothing here: the trust server refuses it (INVALID_GUN) before reading or writing.
  The changefeed of every GUN needs a login; it lists only what the caller may pull.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from storage.references import is_valid_name

ALL_ACTIONS = frozenset({"pull", "push", "delete"})


@dataclass(frozen=True)
class Access:
    """One access entry, as in a token's `access` claim."""

    type: str
    name: str
    actions: frozenset[str]

    def to_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions, key=_ACTION_ORDER.get))}"


_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2, "*": 3}


def expand_actions(actions: Iterable[str]) -> frozenset[str]:
    """`*` means every action; unknown action names are dropped."""
    out: set[str] = set()
    for a in actions:
        a = a.strip()
        if a == "*":
            out |= ALL_ACTIONS
        elif a in ALL_ACTIONS:
            out.add(a)
    return frozenset(out)


def parse_scope(scope: str) -> Access | None:
    """`repository:<name>:<actions>` or `registry:catalog:*`; None when malformed."""
    type_, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name or not type_:
        return None
    if type_ == "registry":
        return Access("registry", name, frozenset({"*"})) if name == "catalog" and "*" in actions.split(",") else None
    if type_ != "repository":
        return None
    return Access("repository", name, expand_actions(actions.split(",")))


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Every scope of every `scope` parameter (a parameter may hold several, space-separated)."""
    out = []
    for value in values:
        for item in value.split():
            access = parse_scope(item)
            if access is not None:
                out.append(access)
    return out


@dataclass(frozen=True)
class ServerNames:
    """The server names GUNs may start with: `names` (`trust.server_names`, or the defaults), and,
    when `from_host` (no names configured), the host:port a request arrived with."""

    names: tuple[str, ...] = ()
    from_host: bool = False

    def accepted(self, request_host: str) -> tuple[str, ...]:
        """The names accepted for one request (authorization and the trust server use the same)."""
        if self.from_host and request_host:
            return (*self.names, request_host.lower())
        return self.names


def gun_repository(gun: str, server_names: Iterable[str]) -> str | None:
    """The repository of trust collection `gun`: `<server name>/<repository>` with a server name
    among `server_names` (case-insensitive) and a valid repository name; None for any other GUN.

    The one GUN-to-repository mapping: authorization, token scopes and the trust server use it."""
    first, sep, rest = gun.partition("/")
    if not sep or first.lower() not in {n.lower() for n in server_names} or not is_valid_name(rest):
        return None
    return rest


def scope_repositories(name: str, server_names: Iterable[str]) -> list[str]:
    """The repositories a token scope's name may mean: a registry repository name itself, and the
    repository of the GUN it may be (`gun_repository`). Each is granted only if allowed on its own."""
    found = [name] if is_valid_name(name) else []
    repository = gun_repository(name, server_names)
    if repository is not None and repository not in found:
        found.append(repository)
    return found


@dataclass(frozen=True)
class Requirement:
    """What a request needs. `kind`: "none" (open), "login" (any principal), "repository",
    "catalog" (`registry:catalog:*`) or "admin". `name` is the name as it appears in the path
    (a GUN on trust paths), `repository` the repository whose roles decide."""

    kind: str
    repository: str = ""
    actions: frozenset[str] = frozenset()
    name: str = ""
    trust: bool = False
    invite: frozenset[str] = frozenset()  # offered in a challenge, not required

    def challenge_scope(self) -> str | None:
        if self.kind == "catalog":
            return "registry:catalog:*"
        if self.kind != "repository":
            return None
        actions = set(self.actions | self.invite)
        if "push" in actions:
            actions.add("pull")  # clients that follow the challenge need both to push
        return Access("repository", self.name or self.repository, frozenset(actions)).scope()


_NAME = r"(?P<name>[^/]+(?:/[^/]+)*?)"
_TRUST = re.compile(r"^/v2/(?P<gun>[^*]+?)/_trust/(?P<rest>tuf/.*|tuf|changefeed)$")
_OCI = [
    (re.compile(rf"^/v2/{_NAME}/tags/list$"), "read"),
    (re.compile(rf"^/v2/{_NAME}/referrers/[^/]+$"), "read"),
    (re.compile(rf"^/v2/{_NAME}/manifests/[^/]+$"), "content"),
    (re.compile(rf"^/v2/{_NAME}/blobs/uploads/[^/]*$"), "upload"),
    (re.compile(rf"^/v2/{_NAME}/blobs/[^/]+$"), "content"),
]


def _action(method: str, kind: str) -> str:
    if kind == "upload":
        return "push"
    if method in ("GET", "HEAD"):
        return "pull"
    if method == "DELETE" and kind == "content":
        return "delete"
    return "pull" if kind == "read" else "push"


def required_access(method: str, path: str, server_names: Iterable[str] = ()) -> Requirement:
    """What `method path` needs (a pure function of the request line and the server names accepted
    for this request)."""
    method = method.upper()
    if path == "/auth/token":
        return Requirement("none")
    if not (path == "/v2" or path.startswith("/v2/")):
        return Requirement("none")
    if path in ("/v2", "/v2/"):
        return Requirement("login")
    if path == "/v2/_catalog":
        return Requirement("catalog")
    if path == "/v2/_trust/changefeed":
        return Requirement("login")  # the handler lists only repositories the caller may pull
    m = _TRUST.match(path)
    if m:
        gun = m.group("gun")
        if method in ("GET", "HEAD"):
            actions = {"pull"}
        elif method == "DELETE":
            actions = {"delete"}
        elif method == "POST" and m.group("rest").endswith(".key"):
            actions = {"push", "delete"}  # server key rotation: notary asks for `*`
        else:
            actions = {"push"}
        repo = gun_repository(gun, server_names)
        if repo is None:  # not a collection of this registry: refused by the trust server, reads nothing
            return Requirement("none", name=gun, trust=True)
        return Requirement("repository", repo, frozenset(actions), name=gun, trust=True)
    for pattern, kind in _OCI:
        m = pattern.match(path)
        if m:
            name = m.group("name")
            return Requirement("repository", name, frozenset({_action(method, kind)}), name=name)
    return Requirement("login")
