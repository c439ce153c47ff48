"""Units of the proxy without HTTP: configuration, challenge parsing, retry delays, staging and commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.loader import ConfigError, parse_settings
from registry.enforcement import NoTrustServer
from registry.proxy.admit import Admission, Admitter, store_admission, verified
from registry.proxy.config import load_proxies, proxy_for
from registry.proxy.upstream import (
    MAX_RETRY_AFTER,
    Upstream,
    UpstreamInvalidError,
    parse_challenge,
    retry_delay,
)
from storage.memory import MemoryDriver
from storage.references import Digest
from storage.store import RegistryStore
from tests.proxy.fake import OCI_MANIFEST, image, sha256
from trust.policy import Policy, PolicyHolder


def _config(proxy: dict) -> dict:
    return {"projects": {"hub": {"proxy": proxy}}}


def test_config_keys_validated_with_clear_errors() -> None:
    parse_settings(_config({"url": "https://registry-1.docker.io", "username": "u", "password_env": "HUB_PASSWORD",
                            "ca": "certs/ca.pem", "tag_ttl": 300}))
    cases = {
        "projects.hub.proxy.url": {"url": "ftp://x"},
        "projects.hub.proxy.tag_ttl": {"url": "https://x", "tag_ttl": -1},
        "projects.hub.proxy.password": {"url": "https://x", "password": "inline"},
        "projects.hub.proxy": {"url": "https://x", "username": "u"},
    }
    for where, proxy in cases.items():
        with pytest.raises(ConfigError, match=f"config error at {where}:"):
            parse_settings(_config(proxy))
    with pytest.raises(ConfigError, match="expected the upstream registry's base URL"):
        parse_settings(_config({"url": "https://host/path"}))
    with pytest.raises(ConfigError, match="username and password_env go together"):
        parse_settings(_config({"url": "https://x", "password_env": "P"}))


def test_password_from_environment_and_ca_relative_to_config(tmp_path: Path) -> None:
    raw = _config({"url": "https://registry-1.docker.io/", "username": "u", "password_env": "HUB_PASSWORD",
                   "ca": "ca.pem", "tag_ttl": 5})
    with pytest.raises(ConfigError, match="HUB_PASSWORD is not set"):
        load_proxies(raw, str(tmp_path), {})
    with pytest.raises(ConfigError, match="proxy.ca: cannot read"):
        load_proxies(raw, str(tmp_path), {"HUB_PASSWORD": "pw"})
    (tmp_path / "ca.pem").write_text("x")
    hub = load_proxies(raw, str(tmp_path), {"HUB_PASSWORD": "pw"})["hub"]
    assert (hub.url, hub.password, hub.ca, hub.tag_ttl) == ("https://registry-1.docker.io", "pw",
                                                            str(tmp_path / "ca.pem"), 5.0)


def test_notary_requirement_refused_in_a_proxy_project() -> None:
    either = [{"cosign": {"trust_root": "a"}}, {"notary": {}}]
    for trust in ({"enforce": True}, {"enforce": True, "require_any": either}):
        raw = {"projects": {"hub": {"proxy": {"url": "https://x"}, "content_trust": trust}}}
        with pytest.raises(ConfigError, match="require_any: a proxy project cannot require Notary v1"):
            load_proxies(raw, None)
    load_proxies({"projects": {"hub": {"proxy": {"url": "https://x"}, "content_trust": {"enforce": False}}}}, None)


def test_upstream_repository_names() -> None:
    hub = load_proxies(_config({"url": "https://registry-1.docker.io"}), None)
    other = load_proxies(_config({"url": "https://ghcr.io"}), None)
    assert proxy_for(hub, "hub") is None and proxy_for(hub, "other/alpine") is None
    assert hub["hub"].upstream_repository("hub/alpine") == "library/alpine"
    assert hub["hub"].upstream_repository("hub/bitnami/redis") == "bitnami/redis"
    assert other["hub"].upstream_repository("hub/alpine") == "alpine"


def test_challenge_parsing() -> None:
    c = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                        'scope="repository:library/alpine:pull"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/alpine:pull"}
    basic = parse_challenge('Basic realm="upstream"')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "upstream"}
    assert parse_challenge("Negotiate abc") is None and parse_challenge(None) is None


def test_retry_delay_honours_retry_after_within_bounds() -> None:
    assert retry_delay("2", 0) == 2.0
    assert retry_delay("3600", 0) == MAX_RETRY_AFTER
    assert retry_delay(None, 0) < retry_delay(None, 1) < retry_delay(None, 2) <= MAX_RETRY_AFTER
    assert retry_delay("Wed, 21 Oct 2015 07:28:00 GMT", 1) == retry_delay(None, 1)


async def test_token_realm_must_be_https_or_the_upstream() -> None:
    hub = load_proxies(_config({"url": "http://127.0.0.1:5000"}), None)["hub"]
    upstream = Upstream(hub)
    challenge = parse_challenge('Bearer realm="http://evil.example/token",service="x"')
    assert challenge is not None
    with pytest.raises(Exception, match="is not https nor the upstream's own"):
        await upstream._token(challenge, "repository:a:pull")
    await upstream.close()


def test_verified_checks_digest_and_strict_parse() -> None:
    body = image(b"{}", b"layer")
    good = verified(body, OCI_MANIFEST, None, sha256(body), "m")
    assert str(good.digest) == sha256(body) and good.blob_sizes() == {Digest.parse(sha256(b"{}")): 2,
                                                                     Digest.parse(sha256(b"layer")): 5}
    with pytest.raises(UpstreamInvalidError, match="does not match|not sha256"):
        verified(body + b" ", OCI_MANIFEST, Digest.parse(sha256(body)), None, "m")
    with pytest.raises(UpstreamInvalidError):
        verified(body + b" ", OCI_MANIFEST, None, sha256(body), "m")  # header names other bytes
    assert verified(body, "application/json", None, None, "m").media_type == OCI_MANIFEST  # the document's own
    with pytest.raises(UpstreamInvalidError, match="does not match Content-Type"):
        verified(body, "application/vnd.docker.distribution.manifest.v2+json", None, None, "m")
    with pytest.raises(UpstreamInvalidError, match="ambiguous"):
        dup = b'{"schemaVersion":2,"schemaVersion":2,' + body[1:]
        verified(dup, OCI_MANIFEST, None, None, "m")


class RecordingDriver(MemoryDriver):
    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    async def put(self, key: str, data: bytes) -> None:
        self.order.append(key)
        await super().put(key, data)

    async def commit_append(self, key: str, dst: str) -> None:
        self.order.append(dst)
        await super().commit_append(key, dst)


async def test_commit_order_blobs_marks_signatures_children_manifest_tag_last() -> None:
    signature_blob = b"payload"
    body = image(b"{}", b"layer")
    manifest = verified(body, OCI_MANIFEST, None, None, "m")
    manifest.tags.append("v1")
    sig = verified(json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": sha256(b"{}"), "size": 2},
                               "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                                           "digest": sha256(signature_blob), "size": 7}]}).encode(),
                   OCI_MANIFEST, None, None, "sig")
    sig.tags.append(f"sha256-{manifest.digest.hex}.sig")
    admission = Admission(manifest, signatures=[sig],
                          small_blobs={Digest.parse(sha256(signature_blob)): signature_blob,
                                       Digest.parse(sha256(b"{}")): b"{}"})
    driver = RecordingDriver()
    marks: list[str] = []

    async def mark(digest: Digest, size: int) -> None:
        marks.append(str(digest))
        driver.order.append(f"mark {digest}")

    await store_admission(RegistryStore(driver), "hub/app", admission, mark)
    order = driver.order
    assert marks == [sha256(b"layer")]  # the config came with the signature: already content
    index = {name: next(i for i, k in enumerate(order) if cond(k)) for name, cond in {
        "blob": lambda k: k.endswith(f"{sha256(signature_blob).split(':')[1]}/data"),
        "mark": lambda k: k.startswith("mark "),
        "sig": lambda k: k.endswith(f"_manifests/tags/sha256-{manifest.digest.hex}.sig"),
        "manifest": lambda k: k.endswith(f"revisions/sha256/{manifest.digest.hex}"),
        "tag": lambda k: k.endswith("_manifests/tags/v1"),
    }.items()}
    assert index["blob"] < index["mark"] < index["sig"] < index["manifest"] < index["tag"]


async def test_staging_gate_refuses_an_unsigned_manifest(tmp_path: Path) -> None:
    """The gate judges the staging copy under the project's policy (e2e: nothing stored when refused)."""
    from tests.signatures.factory import ec_key, public_pem

    (tmp_path / "pub.pem").write_text(public_pem(ec_key()))
    raw = {"trust_roots": {"pub": {"type": "cosign-key", "public_keys": [str(tmp_path / "pub.pem")]}},
           "projects": {"hub": {"content_trust": {"enforce": True,
                                                  "require_any": [{"cosign": {"trust_root": "pub"}}]}}}}
    policy = Policy.from_config(raw, None)
    policy.load_trust_roots()
    body = image(b"{}", b"layer")
    manifest = verified(body, OCI_MANIFEST, None, None, "m")
    manifest.tags.append("v1")
    admitter = Admitter(None, PolicyHolder(policy), NoTrustServer())  # type: ignore[arg-type]
    verdict = await admitter.judge("hub/app", "v1", Admission(manifest))
    assert not verdict.served and "no signature found" in verdict.reason
