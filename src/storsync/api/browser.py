"""A person in a browser (API.md section 5): the dashboard's session cookie, which the API
accepts beside bearer tokens, and the CSRF token every state-changing request made with
it carries.

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it) and Secure under TLS. The CSRF token is derived from the cookie's secret by a one-way
hash: the page gets it in a ``<meta>`` tag and sends it back in ``X-CSRF-Token``; another
origin can read neither. A request with an ``Origin`` other than the service's own is
refused as well, whatever it carries.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

from storsync.errors import Forbidden

COOKIE = "storsync_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def policy(*, style_nonce: str | None = None, blob_workers: bool = False) -> str:
    """The Content-Security-Policy of every page for people: the service's own origin
    alone, no inline script. Beyond 'self': ``data:`` images (icons inlined in
    stylesheets); on a page that asks, ``blob:`` workers (the search index Redoc starts
    from its own bundle) and a nonce for the <style> elements Redoc injects."""
    styles = "'self'" if style_nonce is None else f"'self' 'nonce-{style_nonce}'"
    workers = ("worker-src 'self' blob:",) if blob_workers else ()
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data:",
            "connect-src 'self'",
            *workers,
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def cookie_secret(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def csrf_token(secret: str) -> str:
    return hashlib.sha256(f"storsync-csrf:{secret}".encode()).hexdigest()


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (when it has one) is the service's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"{request.url.scheme}://{host}",)


def check_state_change(request: Request, secret: str, given: str | None) -> None:
    """Refuse a state-changing request made with the cookie that does not carry its CSRF
    token (``given``: from the header or the form), or that comes from another origin."""
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request):
        raise Forbidden("a request from another origin is refused")
    if given is None or not hmac.compare_digest(given, csrf_token(secret)):
        raise Forbidden("this request needs the page's CSRF token (X-CSRF-Token)")


def set_cookie(response: Response, request: Request, secret: str, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        max_age=max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
