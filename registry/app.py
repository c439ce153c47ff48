"""The aiohttp application: routes, middlewares and resources with a lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from config.loader import Settings
from registry import auth, enforcement, notary_api, ops, quota, summary, tag_moves, ui
from registry.access import AUTHORIZER, AllowAll
from registry.handlers import blobs, listing, manifests, uploads
from registry.handlers.common import API_VERSION, DRIVER, SETTINGS, STORE
from registry.handlers.manifests import TAG_MOVES
from registry.metrics import metrics_endpoint, metrics_middleware
from registry.middleware import errors_middleware, request_id_middleware
from registry.proxy import service as proxy
from registry.server import IN_FLIGHT, in_flight_middleware
from storage.base import StorageDriver
from storage.factory import create_driver
from storage.instrumented import InstrumentedDriver
from storage.store import RegistryStore

log = logging.getLogger("trustreg")

NAME = r"{name:[^/]+(?:/[^/]+)*?}"


async def api_version(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"{}", content_type="application/json", headers=API_VERSION)


@web.middleware
async def api_version_header(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    resp = await handler(request)
    resp.headers.update(API_VERSION)
    return resp


def add_oci_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2/", api_version)
    r.add_get("/v2", api_version)
    r.add_get("/v2/_catalog", listing.catalog)
    r.add_get(f"/v2/{NAME}/tags/list", listing.list_tags)
    r.add_get(f"/v2/{NAME}/referrers/{{digest}}", listing.referrers)
    r.add_route("GET", f"/v2/{NAME}/manifests/{{reference}}", manifests.get_manifest)
    r.add_route("HEAD", f"/v2/{NAME}/manifests/{{reference}}", manifests.head_manifest)
    r.add_put(f"/v2/{NAME}/manifests/{{reference}}", manifests.put_manifest)
    r.add_delete(f"/v2/{NAME}/manifests/{{reference}}", manifests.delete_manifest)
    r.add_route("GET", f"/v2/{NAME}/blobs/{{digest}}", blobs.get_blob)
    r.add_route("HEAD", f"/v2/{NAME}/blobs/{{digest}}", blobs.head_blob)
    r.add_delete(f"/v2/{NAME}/blobs/{{digest}}", blobs.delete_blob)
    r.add_post(f"/v2/{NAME}/blobs/uploads/", uploads.start_upload)
    r.add_patch(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.patch_upload)
    r.add_put(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.put_upload)
    r.add_get(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.get_upload, allow_head=False)
    r.add_delete(f"/v2/{NAME}/blobs/uploads/{{upload_id}}", uploads.delete_upload)


def create_app(
    settings: Settings, driver: StorageDriver | None = None, config_path: str | None = None
) -> web.Application:
    """Build the registry application; the driver defaults to the one the settings select."""
    app = web.Application(
        middlewares=[
            in_flight_middleware,
            request_id_middleware,
            metrics_middleware,
            errors_middleware,
            api_version_header,
        ],
        client_max_size=4 * 1024 * 1024,
    )
    app[SETTINGS] = settings
    app[IN_FLIGHT] = [0]
    drv = InstrumentedDriver(driver or create_driver(settings.storage))
    app[DRIVER] = drv
    app[STORE] = RegistryStore(drv)
    app[AUTHORIZER] = AllowAll()
    quota.setup(app, app[STORE], lambda: settings.raw)

    async def storage_lifetime(app: web.Application) -> AsyncIterator[None]:
        await drv.check()
        yield
        await drv.close()

    app.cleanup_ctx.append(storage_lifetime)
    ops.setup(app, config_path)
    auth.setup(app, settings)
    app.router.add_get("/metrics", metrics_endpoint)
    notary = None
    if settings.raw.get("trust", {}).get("enabled", True):
        notary = notary_api.setup(app)
    gate = enforcement.setup(app, notary)
    if notary is not None:
        notary.add_listener(gate.invalidate)
    summary.log_reload_changes(app, app[enforcement.POLICY].current)
    app[TAG_MOVES] = tag_moves
    proxy.setup(app, app[STORE], settings.raw, settings.config_dir, app[enforcement.POLICY],
                enforcement.NoTrustServer())  # Notary v1 is not proxied (bound to the upstream's host)
    add_oci_routes(app)
    ui.setup(app)  # /api/v1/ (JSON) and /ui/ (HTML): trust inspection
    return app
