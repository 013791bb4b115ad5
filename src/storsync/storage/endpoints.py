"""The S3 endpoints a client may point the server at (API.md section 5): one whose host
resolves to a loopback, private or link-local address needs ``allow_private_endpoints``.

Checked when a repository is created or changed, and again by the session's worker just
before it connects, since a name can resolve elsewhere by then (DNS rebinding). The
worker imports this module, so it stays free of heavy imports.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from storsync.errors import Forbidden, InvalidRequest


def check(endpoint: str) -> list[str]:
    """The addresses the endpoint's host resolves to now, every one of them public;
    Forbidden when one is not, InvalidRequest when the host does not resolve."""
    host = urlsplit(endpoint).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise InvalidRequest(f"the endpoint host {host!r} cannot be resolved") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
            raise Forbidden(
                f"the endpoint {endpoint!r} resolves to {address}, a loopback, private or "
                "link-local address; set allow_private_endpoints to use it"
            )
    return addresses


_pinned: dict[str, tuple[str, ...]] = {}  # host (IDNA, lower case): its checked addresses


def pin(endpoint: str, addresses: Sequence[str]) -> None:
    """From now on, this process resolves the endpoint's host to ``addresses`` only (those
    ``check`` accepted), whatever a later DNS answer says. Meant for a process that works
    for one session (the worker): botocore resolves through ``socket.getaddrinfo`` and
    offers no way to give it an address per host; libcurl, which resolves by itself, is
    given them (``pinned``)."""
    held = (urlsplit(endpoint).hostname or "").encode("idna").decode("ascii")
    _pinned[held.lower()] = tuple(addresses)
    resolve = socket.getaddrinfo

    def pinned(
        host: bytes | str | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        asked = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        if asked.lower() != held:
            return resolve(host, port, family, type, proto, flags)
        found: list[Any] = []
        for address in addresses:
            # An IPv6 address when only IPv4 is asked for (or the reverse) gives nothing.
            with contextlib.suppress(socket.gaierror):
                found += resolve(address, port, family, type, proto, flags)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, f"no checked address of {asked} fits")
        return found

    socket.getaddrinfo = pinned


def pinned(endpoint: str) -> tuple[str, ...] | None:
    """The addresses the endpoint's host is pinned to in this process, if it is."""
    host = (urlsplit(endpoint).hostname or "").encode("idna").decode("ascii")
    return _pinned.get(host.lower())
