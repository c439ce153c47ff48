"""A webhook endpoint that accepts connections and never answers does not slow pushes or pulls:
`trustreg serve` (a real process) answers manifest pushes and gate refusals (both emit events) in
milliseconds while every delivery to that endpoint hangs until its timeout, and another endpoint
keeps receiving every event meanwhile."""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request

from tests.events.receiver import Receiver
from tests.helpers import OCI_MANIFEST, digest_of, image_manifest

PUSHES = 25


def timed(method: str, url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, float]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310  (loopback test server)
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - started


def test_hanging_endpoint_never_slows_a_push_or_a_pull(trustreg, receiver: Receiver) -> None:
    receiver.hang.add("stuck")
    server = trustreg({
        "projects": {"secure": {"content_trust": {"enforce": True}}},
        "events": {"poll_seconds": 0.2, "timeout_seconds": 60, "endpoints": [
            {"name": "stuck", "url": receiver.url("stuck"), "types": ["artifact.pushed", "pull.refused"]},
            {"name": "healthy", "url": receiver.url("healthy"), "types": ["artifact.pushed", "pull.refused"]},
        ]},
    })
    pushes, refusals = [], []
    for i in range(PUSHES):
        config, layer = json.dumps({"n": i}).encode(), f"layer {i}".encode()
        for blob in (config, layer):
            status, _ = timed("POST", f"{server.url}/v2/secure/app/blobs/uploads/?digest={digest_of(blob)}", blob)
            assert status == 201
        status, seconds = timed("PUT", f"{server.url}/v2/secure/app/manifests/t{i}",
                                image_manifest(config, [layer]), OCI_MANIFEST)
        assert status == 201
        pushes.append(seconds)
        status, seconds = timed("GET", f"{server.url}/v2/secure/app/manifests/t{i}")
        assert status == 412  # refused by the gate: a pull.refused event
        refusals.append(seconds)
    assert receiver.hung >= 1  # the worker really is stuck on that endpoint
    assert not receiver.of("stuck")
    # Each request took a small fraction of the endpoint's 60 s timeout: nothing waited for it.
    assert max(pushes) < 2 and statistics.median(pushes) < 0.25, pushes
    assert max(refusals) < 2 and statistics.median(refusals) < 0.25, refusals
    # ...and the other endpoint got every event while the stuck one still hangs.
    receiver.wait_for(lambda: len(receiver.of("healthy")) == 2 * PUSHES, message="every event at healthy")
    assert len(receiver.of("healthy", "pull.refused")) == PUSHES and not receiver.of("stuck")
    assert receiver.duplicates() == []
    expected = ['trustreg_events_queue_depth{endpoint="stuck"} 50.0',  # all still waiting
                'trustreg_events_queue_depth{endpoint="healthy"} 0.0',
                'trustreg_events_delivered_total{endpoint="healthy"} 50.0',
                'trustreg_events_delivery_seconds_count{endpoint="healthy"} 50.0']
    deadline = time.monotonic() + 20
    while True:  # the gauges follow the worker's scans (every 0.2 s)
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as resp:  # noqa: S310
            metrics = resp.read().decode()
        if all(line in metrics for line in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(line in metrics for line in expected), [m for m in metrics.splitlines() if "events" in m]
