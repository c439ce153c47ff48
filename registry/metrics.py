"""Prometheus metrics: the middleware that counts requests, and the `/metrics` endpoint.

Metric objects are module-level (one set per process). With `http.workers > 1` the supervisor gives
the workers a shared PROMETHEUS_MULTIPROC_DIR and `/metrics` on any worker answers for all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("trustreg_http_requests_total", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram(
    "trustreg_http_request_duration_seconds",
    "Time to answer a request (headers and body)",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES_IN = Counter("trustreg_http_received_bytes_total", "Request body bytes received", ["route"])
BYTES_OUT = Counter("trustreg_http_sent_bytes_total", "Response bytes sent", ["route"])
UPLOADS_OPEN = Gauge(
    "trustreg_upload_sessions_open", "Upload sessions open in storage (all processes)", multiprocess_mode="max"
)
TRUST_DECISIONS = Counter(
    "trustreg_content_trust_decisions_total", "Content-trust gate decisions", ["result", "reason"]
)
VERIFIER_CACHE = Counter("trustreg_verifier_cache_total", "Trust verification cache lookups", ["result"])
PROXY_REQUESTS = Counter(
    "trustreg_proxy_requests_total", "Proxy project reads: hit (cache), miss (fetched upstream), stale",
    ["project", "kind", "result"],
)
PROXY_UPSTREAM_ERRORS = Counter("trustreg_proxy_upstream_errors_total", "Failed upstream requests", ["project"])
PROXY_REFUSALS = Counter(
    "trustreg_proxy_refusals_total", "Upstream manifests refused by the content-trust gate (not stored)", ["project"]
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@lru_cache(maxsize=8192)
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, memoised: prometheus_client validates and looks the labels up under
    a lock on every call (microseconds), several times per request on the hot path. Label values are
    low-cardinality (route templates, methods, statuses, reasons), so the cache stays small."""
    return metric.labels(*labels)


def route_label(request: web.Request) -> str:
    """The matched route's template (low cardinality), e.g. `/v2/{name}/manifests/{reference}`."""
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = route_label(request)
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        child(REQUESTS, route, request.method, str(status)).inc()
        child(LATENCY, route, request.method).observe(time.perf_counter() - started)
        if request.content_length:
            child(BYTES_IN, route).inc(request.content_length)


async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
    """Prometheus text format; the open-uploads gauge is read from storage's upload index on scrape."""
    from registry.handlers.common import STORE
    from registry.quota import refresh_metrics

    UPLOADS_OPEN.set(await request.app[STORE].open_uploads())
    await refresh_metrics(request.app)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # several workers: aggregate every process's files
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
