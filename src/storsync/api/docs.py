"""The human docs of the API, /docs (Swagger UI) and /redoc, with every asset served by
the service under /static: they work without internet (API.md section 8), need no token
(section 5) and send a Content-Security-Policy that allows only the service's origin."""

from __future__ import annotations

import html
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from storsync.api import browser

STATIC = Path(__file__).parent / "static"
STATIC_PATH = "/static"

# Both pages start their viewer from a served file, never an inline script.
_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{static}/vendor/swagger-ui/favicon-32x32.png">
"""

_SWAGGER_UI = (
    _HEAD
    + """<link rel="stylesheet" href="{static}/vendor/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{static}/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{static}/docs/swagger-ui-init.js"></script>
</body>
</html>
"""
)

_REDOC = (
    _HEAD
    + """<link rel="stylesheet" href="{static}/docs/redoc.css">
</head>
<body>
<noscript>Redoc needs JavaScript; the schema itself is at {openapi}.</noscript>
<div id="redoc" data-spec-url="{openapi}"></div>
<script src="{static}/vendor/redoc/redoc.standalone.js"></script>
<script src="{static}/docs/redoc-init.js" nonce="{nonce}"></script>
</body>
</html>
"""
)


def _page(request: Request, template: str, *, nonce: str | None = None) -> HTMLResponse:
    app: FastAPI = request.app
    # Behind a proxy that mounts the service under a prefix, as FastAPI's own pages do.
    root = request.scope.get("root_path", "").rstrip("/")
    page = template.format(
        title=html.escape(f"{app.title} API"),
        static=html.escape(root + STATIC_PATH),
        openapi=html.escape(root + (app.openapi_url or "")),
        nonce=nonce,
    )
    return HTMLResponse(
        page,
        headers={"Content-Security-Policy": browser.policy(style_nonce=nonce, blob_workers=True)},
    )


def install(app: FastAPI) -> None:
    """/docs, /redoc and /static on ``app``; none of them in the schema."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _page(request, _SWAGGER_UI)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _page(request, _REDOC, nonce=secrets.token_urlsafe(18))
