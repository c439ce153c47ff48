"""Roles per project, from the `projects`, `default_project` and `auth.admins` configuration.

- A project is the first path component of a repository name (`secure/alpine` -> `secure`); a
  name without a slash belongs to `library`; a project not listed uses `default_project`.
- Admins may do everything everywhere. Anyone (anonymous included) may pull from a public
  project. A member has the actions listed for them; nobody else has any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.auth.scope import ALL_ACTIONS


def project_of(repository: str) -> str:
    first, sep, _ = repository.partition("/")
    return first if sep else "library"


@dataclass(frozen=True)
class ProjectRoles:
    public: bool = False
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> ProjectRoles:
        raw = raw or {}
        members = {user: frozenset(actions) for user, actions in (raw.get("members") or {}).items()}
        return cls(public=bool(raw.get("public", False)), members=members)


@dataclass(frozen=True)
class Policy:
    """Who may do what on which repository; `principal` None is anonymous."""

    projects: Mapping[str, ProjectRoles] = field(default_factory=dict)
    default: ProjectRoles = field(default_factory=ProjectRoles)
    admins: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Policy:
        projects = {name: ProjectRoles.from_config(p) for name, p in (raw.get("projects") or {}).items()}
        return cls(
            projects=projects,
            default=ProjectRoles.from_config(raw.get("default_project")),
            admins=frozenset((raw.get("auth") or {}).get("admins") or ()),
        )

    def is_admin(self, principal: str | None) -> bool:
        return principal is not None and principal in self.admins

    def roles(self, repository: str) -> ProjectRoles:
        return self.projects.get(project_of(repository), self.default)

    def actions(self, principal: str | None, repository: str) -> frozenset[str]:
        """Every action `principal` may take on `repository`."""
        if self.is_admin(principal):
            return ALL_ACTIONS
        roles = self.roles(repository)
        granted = set(roles.members.get(principal, ())) if principal is not None else set()
        if roles.public:
            granted.add("pull")
        return frozenset(granted)

    def allows(self, principal: str | None, repository: str, action: str) -> bool:
        return action in self.actions(principal, repository)
