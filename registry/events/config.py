"""The `events` configuration section, checked beyond the schema: endpoint names are unique, every
type is known (the schema's enum names the valid ones), and a `secret_env` names a variable that is
set (a webhook configured to be signed is never sent unsigned)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.loader import ConfigError
from registry.events.record import TYPES


@dataclass(frozen=True)
class Retry:
    """Delivery attempts: exponential backoff from `initial` to `maximum` seconds; an event is
    dead-lettered after `max_attempts` attempts or once it is `max_age` seconds old."""

    initial: float = 1.0
    maximum: float = 300.0
    max_attempts: int = 12
    max_age: float = 86400.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.maximum, self.initial * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    types: frozenset[str]
    secret: bytes | None


@dataclass(frozen=True)
class EventsConfig:
    endpoints: tuple[Endpoint, ...]
    source: str | None
    max_pending: int = 10000  # events waiting in the outbox; beyond it new events are dropped (counted)
    poll_seconds: float = 1.0
    timeout_seconds: float = 10.0
    concurrency: int = 4  # deliveries in flight per endpoint and process
    retry: Retry = Retry()
    dead_letter_days: float = 7.0

    @property
    def lease_seconds(self) -> float:
        """How long a claim stays exclusive: one attempt's timeout and a margin to record its outcome."""
        return self.timeout_seconds + 30.0

    def wanting(self, event_type: str) -> tuple[str, ...]:
        return tuple(e.name for e in self.endpoints if event_type in e.types)


def parse(raw: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> EventsConfig | None:
    """The section as an EventsConfig (None when absent or without endpoints); ConfigError naming the key."""
    if not raw or not raw.get("endpoints"):
        return None
    env = os.environ if environ is None else environ
    endpoints, seen = [], set()
    for i, entry in enumerate(raw["endpoints"]):
        where = f"events.endpoints.{i}"
        name = entry["name"]
        if name in seen:
            raise ConfigError(f"config error at {where}.name: endpoint name {name!r} is used twice")
        seen.add(name)
        unknown = [t for t in entry["types"] if t not in TYPES]
        if unknown:  # the schema refuses these first; kept for configs built in code
            raise ConfigError(f"config error at {where}.types: unknown event type {unknown[0]!r} "
                              f"(valid: {', '.join(TYPES)})")
        secret = None
        if "secret_env" in entry:
            value = env.get(entry["secret_env"], "")
            if not value:
                raise ConfigError(f"config error at {where}.secret_env: environment variable {entry['secret_env']} "
                                  f"is not set; it must hold the HMAC secret of endpoint {name!r}")
            secret = value.encode()
        endpoints.append(Endpoint(name, entry["url"], frozenset(entry["types"]), secret))
    retry = raw.get("retry") or {}
    return EventsConfig(
        endpoints=tuple(endpoints),
        source=raw.get("source"),
        max_pending=raw.get("max_pending", EventsConfig.max_pending),
        poll_seconds=float(raw.get("poll_seconds", EventsConfig.poll_seconds)),
        timeout_seconds=float(raw.get("timeout_seconds", EventsConfig.timeout_seconds)),
        concurrency=raw.get("concurrency", EventsConfig.concurrency),
        retry=Retry(
            initial=float(retry.get("initial_seconds", Retry.initial)),
            maximum=float(retry.get("max_seconds", Retry.maximum)),
            max_attempts=retry.get("max_attempts", Retry.max_attempts),
            max_age=float(retry.get("max_age_seconds", Retry.max_age)),
        ),
        dead_letter_days=float(raw.get("dead_letter_days", EventsConfig.dead_letter_days)),
    )
