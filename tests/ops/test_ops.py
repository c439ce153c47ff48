"""Health, readiness, metrics, SIGHUP reload, SIGTERM drain and multi-worker serving."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request

from aiohttp.test_utils import TestClient

from tests.e2e.conftest import Server
from tests.helpers import digest_of


async def test_healthz_and_readyz(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"


async def test_readyz_reports_unreachable_storage(registry, make_driver, tmp_path) -> None:
    client = await registry()
    if make_driver.kind == "s3":
        from tests.s3server import client as s3_client

        s3_client(make_driver.config["endpoint_url"]).delete_bucket(Bucket=make_driver.config["bucket"])
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "bucket" in (await resp.json())["storage"].lower()
        return
    root = tmp_path / "data"
    root.chmod(0o500)  # not writable: the driver's check fails
    try:
        resp = await client.get("/readyz")
        if resp.status == 200:  # running as root ignores permissions; make the root a file instead
            root.chmod(0o700)
            import shutil

            shutil.rmtree(root)
            root.write_text("not a directory")
            resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["status"] == "unavailable"
    finally:
        if root.is_dir():
            root.chmod(0o700)


async def test_metrics(client: TestClient) -> None:
    data = b"metrics blob"
    await client.post(f"/v2/m/blobs/uploads/?digest={digest_of(data)}", data=data)
    await client.get("/v2/m/manifests/missing")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'trustreg_http_requests_total{method="POST",route="/v2/{name}/blobs/uploads/",status="201"}' in text
    assert 'route="/v2/{name}/manifests/{reference}",status="404"' in text
    assert "trustreg_http_request_duration_seconds_bucket" in text
    assert 'trustreg_storage_operation_seconds_count{driver="filesystem",operation="append"}' in text
    assert 'trustreg_http_received_bytes_total{route="/v2/{name}/blobs/uploads/"}' in text
    await client.post("/v2/m/blobs/uploads/")  # one session left open
    text = await (await client.get("/metrics")).text()
    assert "trustreg_upload_sessions_open 1.0" in text


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_sighup_reloads_and_bad_config_is_refused(trustreg) -> None:
    server: Server = trustreg({"storage": {"delete": True}})
    before = server.config_path.read_text()
    server.config_path.write_text(before.replace("delete: true", "delete: false"))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "configuration reloaded" in server.log()
    server.config_path.write_text("http: {bogus: 1}\n")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload refused" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "config error at http.bogus" in server.log()
    assert _get(f"{server.url}/v2/")[0] == 200  # still serving


def test_sigterm_drains_in_flight_requests(trustreg) -> None:
    """A slow upload in flight when SIGTERM arrives completes before the process exits."""
    import http.client

    server: Server = trustreg()
    data = b"z" * 1_000_000
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", f"/v2/drain/blobs/uploads/?digest={digest_of(data)}")
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    conn.send(data[:1000])
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)

    def finish() -> None:
        conn.send(data[1000:])

    threading.Thread(target=finish).start()
    resp = conn.getresponse()
    assert resp.status == 201
    assert server.proc.wait(timeout=30) == 0


def test_two_workers_share_the_port(trustreg) -> None:
    server: Server = trustreg({"http": {"workers": 2}})
    deadline = time.monotonic() + 30  # ready means one worker answers; wait for the second to listen too
    while server.log().count("listening on") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    answered_by = set()  # request ids start with a per-process prefix
    for i in range(40):
        data = f"worker blob {i}".encode()
        req = urllib.request.Request(
            f"{server.url}/v2/w/blobs/uploads/?digest={digest_of(data)}", data=data, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
            answered_by.add(resp.headers["X-Request-Id"].split("-")[0])
        status, body = _get(f"{server.url}/v2/w/blobs/{digest_of(data)}")
        assert status == 200 and body == data
    status, body = _get(f"{server.url}/metrics")
    assert status == 200
    # Any worker answers for all of them (prometheus multiprocess mode): the 40 pushes add up.
    line = 'trustreg_http_requests_total{method="POST",route="/v2/{name}/blobs/uploads/",status="201"}'
    counts = [float(x.rsplit(" ", 1)[1]) for x in body.decode().splitlines() if x.startswith(line)]
    assert counts == [40.0], body.decode()[:2000]
    children = [line for line in server.log().splitlines() if "listening on" in line]
    assert len(children) == 2, server.log()
    assert len(answered_by) == 2  # both workers served requests on the shared port


def test_json_logs_carry_the_request_id(trustreg) -> None:
    server: Server = trustreg({"log": {"format": "json"}})
    req = urllib.request.Request(f"{server.url}/v2/json/app/tags/list", headers={"X-Request-Id": "trace-42"})
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        assert e.code == 404 and e.headers["X-Request-Id"] == "trace-42"
    deadline = time.monotonic() + 10
    while "trace-42" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("request_id") == "trace-42"]
    assert access, server.log()
    assert access[0]["method"] == "GET" and access[0]["status"] == 404
    assert access[0]["path"] == "/v2/json/app/tags/list" and "duration" in access[0]
    assert all("level" in r and "message" in r for r in records)
