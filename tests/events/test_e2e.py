"""CloudEvents webhooks end to end: two `trustreg serve` processes (replicas) on one storage — a
shared filesystem root, and one S3 bucket (moto) — and real clients causing every event type:

- skopeo copy pushes an image (artifact.pushed), `cosign sign` signs it (signature.added), the
  `notary` CLI publishes trust data (trust.published), skopeo is refused an unsigned image by the gate
  (pull.refused, with the reason skopeo printed), skopeo delete removes the image (artifact.deleted);
- a real receiver on loopback checks each delivery (CloudEvents SDK, HMAC) and gets every event
  exactly once per endpoint although both replicas deliver from the shared outbox;
- the receiver is down while the delete happens (attempts fail, counted in metrics), comes back, and
  receives what it missed; afterwards the outbox is empty.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests import s3server
from tests.clients.notary import NotaryCLI
from tests.e2e.conftest import Server, require, start_server
from tests.e2e.test_signatures import COSIGN_FLAGS, tool
from tests.events.conftest import SECRET
from tests.events.receiver import Receiver
from tests.s3server import free_port

ALL = ["artifact.pushed", "artifact.deleted", "pull.refused", "signature.added", "trust.published"]


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"skopeo {' '.join(args)}:\n{result.stderr}"
    return result


def metric(server: Server, name: str, endpoint: str) -> float:
    body = urllib.request.urlopen(  # noqa: S310  (loopback test server)
        urllib.request.Request(f"{server.url}/metrics"), timeout=10,
        context=__import__("ssl")._create_unverified_context()).read().decode()
    m = re.search(rf'^{name}{{endpoint="{endpoint}"}} ([0-9.e+]+)$', body, re.M)
    return float(m.group(1)) if m else 0.0


def replicas(tmp_path: Path, certs: Path, receiver: Receiver, storage: dict[str, Any]) -> list[Server]:
    ports = [free_port(), free_port()]
    config = {
        "http": {"tls": {"certificate": str(certs / "server.crt"), "key": str(certs / "server.key")}},
        "storage": storage,
        "trust": {"keys": {"insecure_dev_passphrase": True},
                  "server_names": [f"127.0.0.1:{p}" for p in ports]},
        "projects": {"secure": {"content_trust": {"enforce": True}}},
        "events": {
            "poll_seconds": 0.3,
            "retry": {"initial_seconds": 0.3, "max_seconds": 1},
            "endpoints": [
                {"name": "security", "url": receiver.url("security"), "secret_env": "HOOK_SECRET", "types": ALL},
                {"name": "audit", "url": receiver.url("audit"), "types": ["artifact.deleted", "trust.published"]},
            ],
        },
    }
    return [start_server(tmp_path / f"replica{i}", config, env={"HOOK_SECRET": SECRET.decode()}, port=port)
            for i, port in enumerate(ports)]


def one(receiver: Receiver, endpoint: str, event_type: str, subject: str) -> dict[str, Any]:
    """Wait for the event of `event_type` about `subject` at `endpoint`."""
    found = receiver.wait_for(lambda: [e for e in receiver.of(endpoint, event_type) if e["subject"] == subject],
                              message=f"{event_type} {subject} at {endpoint}")
    return found[0]


def scenario(tmp_path: Path, certs: Path, test_image: Path, receiver: Receiver,
             storage: dict[str, Any]) -> list[Server]:
    require("skopeo", "notary")
    cosign = tool("cosign")
    digests = dict(line.split("=", 1) for line in (test_image / "digests.env").read_text().splitlines() if "=" in line)
    amd64, arm64 = digests["AMD64_MANIFEST"], digests["ARM64_MANIFEST"]
    a, b = servers = replicas(tmp_path, certs, receiver, storage)
    try:
        # artifact.pushed: skopeo pushes through replica a
        skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1", f"docker://{a.addr}/open/app:v1")
        pushed = one(receiver, "security", "artifact.pushed", f"open/app:v1@{amd64}")
        assert pushed["source"] == a.url and pushed["datacontenttype"] == "application/json"
        size = (test_image / "oci" / "blobs" / "sha256" / amd64.removeprefix("sha256:")).stat().st_size
        assert pushed["data"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert pushed["data"]["size"] == size and pushed["data"]["principal"] is None  # no auth: anonymous
        assert isinstance(pushed["data"]["requestId"], str) and pushed["data"]["requestId"]

        # signature.added: cosign signs through replica b
        keys = tmp_path / "keys"
        keys.mkdir()
        env = {"COSIGN_PASSWORD": "e2e", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker")}
        run = lambda *args: subprocess.run(list(args), capture_output=True, text=True, timeout=300,  # noqa: E731
                                           env={**__import__("os").environ, **env}, stdin=subprocess.DEVNULL)
        assert run(cosign, "generate-key-pair", "--output-key-prefix", str(keys / "ci")).returncode == 0
        signed = run(cosign, "sign", "--key", str(keys / "ci.key"), "--use-signing-config=false",
                     "--tlog-upload=false", *COSIGN_FLAGS, "-y", f"{b.addr}/open/app@{amd64}")
        assert signed.returncode == 0, signed.stderr
        signature = receiver.wait_for(lambda: receiver.of("security", "signature.added"), message="signature.added")
        assert signature[0]["data"]["signedDigest"] == amd64 and signature[0]["source"] == b.url
        assert signature[0]["subject"].startswith("open/app@sha256:")  # a referrer, pushed by digest
        assert one(receiver, "security", "artifact.pushed", signature[0]["subject"])  # also an artifact

        # trust.published: the notary CLI publishes through replica b
        skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1", f"docker://{b.addr}/secure/app:signed")
        gun = f"{b.addr}/secure/app"
        notary = NotaryCLI(b.url, tmp_path / "notary", certs / "ca.crt")
        notary("init", gun)
        notary.sign(gun, "signed", amd64, size)
        for endpoint in ("security", "audit"):
            published = one(receiver, endpoint, "trust.published", "secure/app")
            assert published["data"]["gun"] == gun and "targets" in published["data"]["roles"]

        # pull.refused: skopeo is refused an unsigned image by replica a's gate
        skopeo("copy", "--dest-tls-verify=false", f"oci:{test_image}/oci:v1-arm64",
               f"docker://{a.addr}/secure/app:unsigned")
        refused = skopeo("copy", "--src-tls-verify=false", f"docker://{a.addr}/secure/app:unsigned",
                         f"oci:{tmp_path}/out:u", check=False)
        assert refused.returncode != 0 and "The image is not signed in Notary." in refused.stderr
        event = one(receiver, "security", "pull.refused", f"secure/app:unsigned@{arm64}")
        assert event["data"]["reason"] and event["data"]["reason"] in refused.stderr, (event, refused.stderr)

        # the receiver is down during the delete: attempts fail, then it comes back and gets it
        receiver.stop()
        skopeo("delete", "--tls-verify=false", f"docker://{a.addr}/open/app:v1")
        deadline = time.monotonic() + 30
        while sum(metric(s, "trustreg_events_failed_attempts_total", "audit") for s in servers) < 2:
            assert time.monotonic() < deadline, "no failed attempt while the receiver was down"
            time.sleep(0.2)
        assert not receiver.of("security", "artifact.deleted")
        receiver.start()
        for endpoint in ("security", "audit"):
            deleted = one(receiver, endpoint, "artifact.deleted", f"open/app@{amd64}")
            assert deleted["data"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"

        time.sleep(2)  # several scans of both replicas: nothing is sent twice
        assert receiver.problems == []
        assert receiver.duplicates() == []
        assert {e["type"].removeprefix("io.trustreg.") for e in receiver.of("security")} == set(ALL)
        assert {e["type"] for e in receiver.of("audit")} == {"io.trustreg.artifact.deleted",
                                                             "io.trustreg.trust.published"}
        assert all(d.headers.get("X-Trustreg-Signature") is None for d in receiver.deliveries if d.endpoint == "audit")
        delivered = sum(metric(s, "trustreg_events_delivered_total", "security") for s in servers)
        assert delivered == len(receiver.of("security"))
        return servers
    except BaseException:
        for s in servers:
            s.stop()
        raise


def test_two_replicas_on_one_filesystem(tmp_path: Path, certs: Path, test_image: Path, receiver: Receiver) -> None:
    root = tmp_path / "shared"
    servers = scenario(tmp_path, certs, test_image, receiver, {"filesystem": {"root": str(root)}})
    for s in servers:
        s.stop()
    assert not list((root / "events" / "outbox").iterdir())  # delivered events are cleaned up
    assert not (root / "events" / "dead").exists()


def test_two_replicas_on_one_s3_bucket(tmp_path: Path, certs: Path, test_image: Path, receiver: Receiver,
                                        moto_endpoint: str) -> None:
    bucket = s3server.create_bucket(moto_endpoint)
    servers = scenario(tmp_path, certs, test_image, receiver, {"s3": s3server.s3_config(moto_endpoint, bucket)})
    for s in servers:
        s.stop()
    listed = s3server.client(moto_endpoint).list_objects_v2(Bucket=bucket, Prefix="events/")
    assert listed["KeyCount"] == 0, listed.get("Contents")


