"""One event as it is stored and sent: a CloudEvents 1.0 JSON document (structured mode), its
outbox record, and the HMAC signature of its body.

The body is serialised once, when the event is appended to the outbox, so every delivery attempt of
an event sends the same bytes (same `id`, same signature): receivers deduplicate on `id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

TYPES = ("artifact.pushed", "artifact.deleted", "pull.refused", "signature.added", "trust.published")
TYPE_PREFIX = "io.trustreg."
CONTENT_TYPE = "application/cloudevents+json"
SIGNATURE_HEADER = "X-Trustreg-Signature"


def new_id() -> str:
    """A unique event id that sorts by creation time: `<ns since the epoch, 20 digits>-<16 hex>`."""
    return f"{time.time_ns():020d}-{os.urandom(8).hex()}"


def id_time(event_id: str) -> float:
    """The creation time (Unix seconds) an id carries; 0 for anything else."""
    head = event_id.split("-", 1)[0]
    return int(head) / 1e9 if head.isdigit() else 0.0


def subject(repository: str, tag: str | None = None, digest: str | None = None) -> str:
    """`<repository>:<tag>@<digest>`, without `:<tag>` when by digest and without `@<digest>` when unknown."""
    return repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def make_body(event_type: str, source: str, subject_text: str, data: dict[str, Any], event_id: str) -> bytes:
    """The structured-mode CloudEvent body for `io.trustreg.<event_type>`."""
    event = CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": event_id,
            "type": TYPE_PREFIX + event_type,
            "source": source,
            "subject": subject_text,
            "time": datetime.fromtimestamp(id_time(event_id), UTC),
            "datacontenttype": "application/json",
        },
        data=data,
    )
    return to_structured_event(event).body


def signature(secret: bytes, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`, the value of the X-Trustreg-Signature header."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Record:
    """An outbox entry: the event body and the endpoints (by name) that want it."""

    id: str
    type: str
    body: bytes
    endpoints: tuple[str, ...]

    @property
    def created(self) -> float:
        return id_time(self.id)

    def dumps(self) -> bytes:
        return json.dumps({"id": self.id, "type": self.type, "endpoints": list(self.endpoints),
                           "body": self.body.decode()}, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Record:
        doc = json.loads(raw)
        return cls(doc["id"], doc["type"], doc["body"].encode(), tuple(doc["endpoints"]))
