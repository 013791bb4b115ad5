"""The ASGI application: the three faces, health, metrics, one error table."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storsync import __version__
from storsync.api import dashboard, docs, errors, native, notifications, plm, veeam
from storsync.api.security import Viewer
from storsync.config import Settings
from storsync.model import SessionState
from storsync.service.core import RepositoryMetrics, Service

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
        yield from _per_repository(metrics.per_repository)
        info = GaugeMetricFamily("storsync_build_info", "The running version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def _per_repository(repositories: list[RepositoryMetrics]) -> Iterator[GaugeMetricFamily]:
    """Per repository (API.md section 7, Operations), labelled by id and name. Sums over
    the sessions in the history (``retention_days``), so they may fall when it is pruned."""
    labels = ["repository", "name"]
    family = functools.partial(GaugeMetricFamily, labels=labels)
    success = family(
        "storsync_repository_last_success_timestamp_seconds",
        "When its last session completed (absent: never).",
    )
    sessions = GaugeMetricFamily(
        "storsync_repository_sessions",
        "Its sessions in the history, by state (the result of those that ended).",
        labels=[*labels, "state"],
    )
    files = GaugeMetricFamily(
        "storsync_repository_files",
        "Files its sessions in the history wrote, by direction.",
        labels=[*labels, "direction"],
    )
    moved = GaugeMetricFamily(
        "storsync_repository_bytes",
        "Bytes its sessions in the history transferred, by direction.",
        labels=[*labels, "direction"],
    )
    conflicts = family("storsync_repository_open_conflicts", "Its conflicts waiting for a person.")
    halted = family("storsync_repository_halted", "1 while a halted session waits for approval.")
    for r in repositories:
        key = [r.id, r.name]
        if r.last_success_ns is not None:
            success.add_metric(key, r.last_success_ns / 1e9)
        for state in SessionState:
            sessions.add_metric([*key, state.value], r.totals.sessions_by_state.get(state, 0))
        files.add_metric([*key, "push"], r.totals.files_pushed)
        files.add_metric([*key, "pull"], r.totals.files_pulled)
        moved.add_metric([*key, "push"], r.totals.bytes_pushed)
        moved.add_metric([*key, "pull"], r.totals.bytes_pulled)
        conflicts.add_metric(key, r.open_conflicts)
        halted.add_metric(key, int(r.halted))
    yield from (success, sessions, files, moved, conflicts, halted)


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
            tls = settings.tls_cert is not None or settings.tls_self_signed
            listening = f"{'https' if tls else 'http'}://{settings.host}:{settings.port}"
            log.info("%s", await run_in_threadpool(current.summary, listening))
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
        docs_url=None,  # /docs and /redoc: docs.install, every asset served here
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    docs.install(app)

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
    dashboard.install(app)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(request: Request, _: Viewer) -> Response:
        """Prometheus text format."""
        body = generate_latest(request.app.state.metrics)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(veeam.VeeamPaths)
    app.add_middleware(errors.RefuseControlCharacters)
    return app
