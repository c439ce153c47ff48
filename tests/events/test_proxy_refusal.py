"""pull.refused for an upstream manifest a proxy project did not admit (refused before it is stored,
so the gate's refusal comes from the proxy's staging, not from the stored-manifest gate)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.events.receiver import Receiver
from tests.events.test_delivery import FAST, until
from tests.proxy.fake import FakeRegistry


@pytest.fixture
def upstream() -> Iterator[FakeRegistry]:
    fake = FakeRegistry().start()
    yield fake
    fake.stop()


async def test_proxy_refusal_is_an_event(registry, receiver: Receiver, upstream: FakeRegistry,
                                         tmp_path: Path) -> None:
    key = tmp_path / "publisher.pub"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    digest = upstream.add_image("v1", b'{"architecture":"amd64","os":"linux"}', b"unsigned layer")
    client = await registry({
        "trust": {"enabled": False},
        "trust_roots": {"publisher": {"type": "cosign-key", "public_keys": [str(key)]}},
        "projects": {"hub": {"public": True, "proxy": {"url": upstream.url}, "content_trust": {
            "enforce": True, "require_any": [{"cosign": {"trust_root": "publisher"}}]}}},
        "events": {**FAST, "endpoints": [{"name": "sec", "url": receiver.url("sec"), "types": ["pull.refused"]}]},
    })
    resp = await client.get("/v2/hub/team/app/manifests/v1")
    assert resp.status == 412
    message = (await resp.json())["errors"][0]["message"]
    events = await until(lambda: receiver.of("sec"))
    assert len(events) == 1
    event = events[0]
    data = event["data"] if isinstance(event["data"], dict) else json.loads(event["data"])
    assert event["type"] == "io.trustreg.pull.refused"
    assert event["subject"] == f"hub/team/app:v1@{digest}"
    assert data["digest"] == digest and data["reason"] and data["reason"] in message
