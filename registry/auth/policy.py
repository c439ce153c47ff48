"""Roles per project (`projects.<p>.public`, `projects.<p>.members`, `default_project`) and
`auth.admins`, on top of the shared project policy in `trust.policy`.

- Admins may do everything everywhere. Anyone (anonymous included) may pull from a public
  project. A member has the actions listed for them; nobody else has any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from registry.auth.scope import ALL_ACTIONS
from trust.policy import Policy as ProjectPolicy
from trust.policy import project_of

__all__ = ["Policy", "project_of"]


@dataclass(frozen=True)
class Policy:
    """Who may do what on which repository; `principal` None is anonymous."""

    projects: ProjectPolicy = field(default_factory=lambda: ProjectPolicy.from_config({}))
    admins: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Policy:
        return cls(ProjectPolicy.from_config(raw), frozenset((raw.get("auth") or {}).get("admins") or ()))

    def is_admin(self, principal: str | None) -> bool:
        return principal is not None and principal in self.admins

    def actions(self, principal: str | None, repository: str) -> frozenset[str]:
        """Every action `principal` may take on `repository`."""
        if self.is_admin(principal):
            return ALL_ACTIONS
        project = self.projects.project(repository)
        granted = set(project.members.get(principal, ())) if principal is not None else set()
        if project.public:
            granted.add("pull")
        return frozenset(granted)

    def allows(self, principal: str | None, repository: str, action: str) -> bool:
        return action in self.actions(principal, repository)
