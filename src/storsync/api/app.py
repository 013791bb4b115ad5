"""The ASGI application: the three faces, health, metrics, one error table."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storsync import __version__
from storsync.api import errors, native, notifications, plm, veeam
from storsync.api.security import Viewer
from storsync.config import Settings
from storsync.model import SessionState
from storsync.service.core import Service

log = logging.getLogger("storsync.api")


class _Metrics(Collector):
    """Read from the store at scrape time, so the figures are those every face shows."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self):  # type: ignore[no-untyped-def]  # prometheus_client's own signature
        metrics = self.service.metrics()
        by_state = GaugeMetricFamily(
            "storsync_sessions", "Sessions in the history, by state.", labels=["state"]
        )
        for state in SessionState:
            by_state.add_metric([state.value], metrics.sessions_by_state.get(state, 0))
        yield by_state
        yield GaugeMetricFamily(
            "storsync_workers_running",
            "Session worker processes running now.",
            value=metrics.workers_running,
        )
        yield GaugeMetricFamily(
            "storsync_repositories", "Repositories configured.", value=metrics.repositories
        )
        yield GaugeMetricFamily(
            "storsync_last_event_id", "Id of the newest event.", value=metrics.last_event_id
        )
        info = GaugeMetricFamily("storsync_build_info", "The running version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def create_app(settings: Settings, *, service: Service | None = None) -> FastAPI:
    """The application; it opens the service at startup unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        current: Service = (
            await run_in_threadpool(Service.open, settings) if service is None else service
        )
        app.state.service = current
        hub = current.hub(asyncio.get_running_loop())
        app.state.hub = hub
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Metrics(current))
        app.state.metrics = registry
        if owned:
            if current.generated_admin_password:
                # Printed once, on the first start; only its hash is stored.
                print(
                    f"storsync: created user {settings.admin_user!r} with password "
                    f"{current.generated_admin_password} (shown only now)",
                    flush=True,
                )
            await run_in_threadpool(current.start)
        # What exists now (modules, routes, schemas) lives as long as the process: kept
        # out of the collector's full passes, which otherwise stall every request in
        # flight for tens of milliseconds while a sync publishes its events.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            hub.close()
            if owned:
                await run_in_threadpool(current.close)

    app = FastAPI(
        title="storsync",
        version=__version__,
        description=(
            "Two-way synchronization of a local directory with a remote storage. "
            "Native API under /api/v1; the PLM Media Manager face under "
            "/api/media-manager/v0; the Veeam Backup for Microsoft 365 face under /v6."
        ),
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # made once; errors as each face answers them
            app.openapi_schema = errors.document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(native.public)
    app.include_router(native.router)
    app.include_router(plm.router)
    app.include_router(veeam.router)
    app.include_router(notifications.router)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(request: Request, _: Viewer) -> Response:
        """Prometheus text format."""
        body = generate_latest(request.app.state.metrics)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(veeam.VeeamPaths)
    app.add_middleware(errors.RefuseControlCharacters)
    return app
