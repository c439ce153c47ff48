"""An htpasswd file of bcrypt entries (`htpasswd -B`), checked in constant time.

- Only bcrypt (`$2y$`, `$2b$`, `$2a$`) is accepted; any other hash type refuses the whole file at
  load, naming the line and the type, so a weak file never half-works.
- An unknown user costs one bcrypt check against a dummy hash of the file's highest cost, so
  unknown users and wrong passwords take the same time and get the same answer.
- Passwords are compared on their first 72 bytes, as `htpasswd -B` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import bcrypt

from config.loader import ConfigError

_BCRYPT = re.compile(rb"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_DEFAULT_COST = 10


class HtpasswdError(ConfigError):
    """The htpasswd file cannot be used; the message says which line and why."""


def _hash_type(h: str) -> str:
    if h.startswith("$apr1$"):
        return "MD5 (apr1, htpasswd -m)"
    if h.startswith("{SHA}"):
        return "SHA-1 ({SHA}, htpasswd -s)"
    if h.startswith("$1$"):
        return "MD5-crypt ($1$)"
    if h.startswith("$5$") or h.startswith("$6$"):
        return "SHA-crypt ($5$/$6$)"
    if h.startswith("$2"):
        return "malformed bcrypt"
    if len(h) == 13:
        return "DES crypt (htpasswd -d)"
    return "plain text or unknown"


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, bytes]:
    """`user:hash` lines (blank lines and `#` comments skipped) -> {user: bcrypt hash}."""
    entries: dict[str, bytes] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise HtpasswdError(f"config error at auth.htpasswd: {source} line {lineno}: expected user:hash")
        if not _BCRYPT.match(hashed.encode()):
            raise HtpasswdError(
                f"config error at auth.htpasswd: {source} line {lineno} (user {user!r}): unsupported hash type "
                f"{_hash_type(hashed)}; only bcrypt entries are accepted (create them with `htpasswd -B`)"
            )
        entries[user] = hashed.encode()
    return entries


class Htpasswd:
    """Users and their bcrypt hashes; `check` is the only way to use them."""

    def __init__(self, entries: Mapping[str, bytes]) -> None:
        self._entries = dict(entries)
        cost = max((int(_BCRYPT.match(h).group(1)) for h in self._entries.values()), default=_DEFAULT_COST)  # type: ignore[union-attr]
        self._dummy = bcrypt.hashpw(b"trustreg-no-such-user", bcrypt.gensalt(cost))

    @classmethod
    def load(cls, path: str | Path) -> Htpasswd:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise HtpasswdError(f"config error at auth.htpasswd: cannot read {path}: {e.strerror}") from e
        return cls(parse_htpasswd(text, str(path)))

    def __contains__(self, user: str) -> bool:
        return user in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, user: str, password: str) -> bool:
        """Whether `password` is `user`'s; same work and answer for unknown users and wrong passwords."""
        hashed = self._entries.get(user)
        ok = bcrypt.checkpw(password.encode()[:72], hashed if hashed is not None else self._dummy)
        return ok and hashed is not None
