"""The registry on S3 (moto server mode on loopback): real clients, two processes sharing a bucket,
and clear failures when S3 is missing or goes away."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests import s3server
from tests.clients.image import TestImage
from tests.clients.skopeo import Skopeo, skopeo_scenario
from tests.e2e.conftest import REPO, require


def s3_storage(endpoint: str, bucket: str) -> dict:
    return {"s3": s3server.s3_config(endpoint, bucket, max_attempts=2, connect_timeout=2, read_timeout=10)}


def request(url: str, method: str = "GET", data: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_skopeo_scenario_on_s3(trustreg, moto_endpoint, image: TestImage, tmp_path: Path) -> None:
    require("skopeo")
    server = trustreg({"storage": s3_storage(moto_endpoint, s3server.create_bucket(moto_endpoint))})
    skopeo_scenario(Skopeo(tmp_path), server.addr, image, "harness/skopeo", tmp_path)


def test_two_processes_share_one_bucket(trustreg, moto_endpoint) -> None:
    storage = s3_storage(moto_endpoint, s3server.create_bucket(moto_endpoint))
    a, b = trustreg({"storage": storage}), trustreg({"storage": storage})
    data = os.urandom(7 * 1024 * 1024 + 123)  # more than one 5 MiB part
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = request(f"{a.url}/v2/shared/app/blobs/uploads/", "POST")
    assert status == 202
    location = headers["Location"]
    status, headers, _ = request(f"{a.url}{location}", "PATCH", data[:6_000_000],
                                 {"Content-Range": "0-5999999", "Content-Type": "application/octet-stream"})
    assert status == 202
    status, headers, _ = request(f"{b.url}{location}", "PATCH", data[6_000_000:],
                                 {"Content-Range": f"6000000-{len(data) - 1}",
                                  "Content-Type": "application/octet-stream"})
    assert status == 202, headers
    status, _, _ = request(f"{b.url}{location}?digest={digest}", "PUT")
    assert status == 201
    config = b'{"architecture":"amd64","os":"linux"}'
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    assert request(f"{a.url}/v2/shared/app/blobs/uploads/?digest={config_digest}", "POST", config)[0] == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)}],
    }).encode()
    status, _, _ = request(f"{a.url}/v2/shared/app/manifests/v1", "PUT", manifest,
                           {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201
    status, _, body = request(f"{b.url}/v2/shared/app/manifests/v1")
    assert status == 200 and body == manifest
    status, _, body = request(f"{b.url}/v2/shared/app/blobs/{digest}")
    assert status == 200 and body == data


def test_missing_bucket_refused_at_start(tmp_path, moto_endpoint) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "http": {"addr": "127.0.0.1:0"}, "storage": s3_storage(moto_endpoint, "no-such-bucket-here"),
        "trust": {"enabled": False},
    }))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "registry.cli", "serve", "--config", str(config)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "no-such-bucket-here" in result.stderr, result.stderr
    assert time.monotonic() - started < 30


def test_s3_gone_at_run_time_answers_503(trustreg) -> None:
    endpoint, stop = s3server.start_moto()
    try:
        server = trustreg({"storage": s3_storage(endpoint, s3server.create_bucket(endpoint))})
        assert request(f"{server.url}/v2/x/tags/list")[0] == 404
    finally:
        stop()
    started = time.monotonic()
    status, _, body = request(f"{server.url}/v2/x/tags/list")
    assert status == 503
    assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < 30
    assert request(f"{server.url}/readyz")[0] == 503
