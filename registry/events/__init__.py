"""CloudEvents webhooks: artifact.pushed, artifact.deleted, pull.refused, signature.added and
trust.published, delivered at least once from a durable outbox in storage shared by every replica.

- record:   the CloudEvents 1.0 body, the outbox record and the HMAC signature
- config:   the `events` section
- outbox:   the outbox's layout in storage and its create-only claims
- delivery: the per-process delivery worker (retries, backoff, dead letters, metrics)
- wiring:   the app's `Events.emit` and the worker's lifetime
- hooks:    one call per handler
"""

from registry.events.wiring import EVENTS, Events, setup

__all__ = ["EVENTS", "Events", "setup"]
