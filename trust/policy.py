"""Per-project policy from the YAML config: who may do what, and where content trust is enforced.

A project is the first path component of a repository name (`secure/alpine` -> `secure`); a name
without a slash belongs to project `library`. Projects not listed use `default_project`, whose own
default is: private, no members, no enforcement.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SIGNERS: tuple[str, ...] = ("targets/releases", "targets")
DEFAULT_PROJECT_NAME = "library"
_versions = itertools.count(1)


@dataclass(frozen=True)
class ContentTrust:
    enforce: bool = False
    signers: tuple[str, ...] = DEFAULT_SIGNERS
    root_keys: frozenset[str] = frozenset()
    inherit_index: bool = True


@dataclass(frozen=True)
class Project:
    name: str
    public: bool = False
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    content_trust: ContentTrust = ContentTrust()


def project_of(repository: str) -> str:
    """`secure/alpine` -> `secure`; `alpine` -> `library`."""
    head, sep, _ = repository.partition("/")
    return head if sep else DEFAULT_PROJECT_NAME


def _project(name: str, raw: Mapping[str, Any] | None) -> Project:
    raw = raw or {}
    ct = raw.get("content_trust") or {}
    return Project(
        name=name,
        public=bool(raw.get("public", False)),
        members={user: frozenset(actions) for user, actions in (raw.get("members") or {}).items()},
        content_trust=ContentTrust(
            enforce=bool(ct.get("enforce", False)),
            signers=tuple(ct.get("signers") or DEFAULT_SIGNERS),
            root_keys=frozenset(ct.get("root_keys") or ()),
            inherit_index=bool(ct.get("inherit_index", True)),
        ),
    )


@dataclass(frozen=True)
class Policy:
    """An immutable snapshot of every project's policy; `version` changes on each reload."""

    projects: Mapping[str, Project]
    default: Project
    version: int

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Policy:
        """Build from a validated config document (its `projects` and `default_project`)."""
        projects = {name: _project(name, p) for name, p in (raw.get("projects") or {}).items()}
        return cls(projects, _project("*", raw.get("default_project")), next(_versions))

    def project(self, repository: str) -> Project:
        name = project_of(repository)
        project = self.projects.get(name)
        if project is not None:
            return project
        return Project(name, self.default.public, self.default.members, self.default.content_trust)


class PolicyHolder:
    """The current policy, swapped atomically on reload (readers never see a half-applied one)."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy

    def reload(self, raw: Mapping[str, Any]) -> None:
        self.current = Policy.from_config(raw)
