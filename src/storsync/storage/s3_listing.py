"""Listing pages parsed in one pass.

botocore reads a ListObjectsV2 page twice: once whole, only to see whether a 200 answer
is an S3 error in disguise, then again walking its shape model for every field of every
key: 38 ms of client CPU per 1,000 keys here, which a remote check of 100,000 keys pays
every minute. Before botocore parses a page, this handler parses it once with
ElementTree (the XML parser botocore uses, so the same entities and the same refusals),
tells an error apart as botocore does, and takes the ``Contents`` out into the
dictionaries botocore would have made; botocore parses the rest of the page, so paging,
errors and the decoding of url-encoded keys (an after-call handler, which sees these
``Contents`` as its own) stay botocore's. Every other operation goes through botocore's
own check, unchanged.

A listing may also be digested (``digesting``): every page's bytes, the continuation
tokens cut out (AWS's are opaque and differ from one listing to the next), go into one
hash, so that a remote check can tell a listing identical to the last one without
parsing it; a probe (``keys=False``) cuts the ``Contents`` but the last out before
botocore parses the page, which leaves it the few fields that page on and the page's
last key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from storsync.storage.s3_client import timestamp

EVENT = "before-parse.s3"
_TOKENS = (b"ContinuationToken", b"NextContinuationToken")


@dataclass
class Digest:
    """The hash of a listing's pages, as they came."""

    keys: bool
    _hash: Any = field(default_factory=lambda: hashlib.blake2b(digest_size=20))

    def hexdigest(self) -> str:
        return str(self._hash.hexdigest())

    def page(self, body: bytes) -> bytes:
        """Take one page into the hash; the body botocore is to parse (its tokens page)."""
        hashed = body
        for tag in _TOKENS:
            hashed = _cut(hashed, b"<" + tag + b">", b"</" + tag + b">")
        self._hash.update(hashed)
        return body if self.keys else _all_but_last(body, b"<Contents>")


# The digest of the listing under way in this thread, if one is asked for: the handler
# is the client's, shared by every thread that lists.
_DIGEST: ContextVar[Digest | None] = ContextVar("s3_listing_digest", default=None)


@contextlib.contextmanager
def digesting(*, keys: bool) -> Iterator[Digest]:
    """Digest the listings made in this block; without ``keys``, parse none of their keys."""
    digest = Digest(keys)
    with digested_into(digest):
        yield digest


@contextlib.contextmanager
def digested_into(digest: Digest) -> Iterator[None]:
    """Digest the listings made in this block into ``digest``."""
    token = _DIGEST.set(digest)
    try:
        yield
    finally:
        _DIGEST.reset(token)


def _cut(body: bytes, start: bytes, end: bytes) -> bytes:
    """``body`` without what lies from the first ``start`` to the next ``end``: in XML
    text a tag's name cannot appear unescaped, so a find is exact."""
    i = body.find(start)
    if i < 0:
        return body
    j = body.find(end, i)
    return body if j < 0 else body[:i] + body[j + len(end) :]


def _all_but_last(body: bytes, start: bytes) -> bytes:
    """``body`` without the elements that begin with ``start`` but the last one (a
    listing's ``Contents`` lie together): the page's last key is parsed, which ends a
    range (storage.s3_walk)."""
    i, j = body.find(start), body.rfind(start)
    return body if i == j else body[:i] + body[j:]


def install(client: Any) -> None:
    from botocore import handlers

    botocore_check = getattr(handlers, "_handle_200_error", None)
    if botocore_check is None:  # another botocore: its own parsing stays, whole
        return
    # This client's own copy of the session's handlers: other clients keep theirs.
    events = client.meta.events
    events.unregister(f"{EVENT}.*", botocore_check)
    events.register_first(f"{EVENT}.*", functools.partial(_before_parse, botocore_check))


def _before_parse(
    botocore_check: Callable[..., None],
    operation_model: Any,
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    **kwargs: Any,
) -> None:
    if operation_model.name != "ListObjectsV2":
        botocore_check(operation_model=operation_model, response_dict=response_dict, **kwargs)
        return
    if response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return
    digest = _DIGEST.get()
    if digest is not None:
        response_dict["body"] = digest.page(response_dict["body"])
    try:
        root = ElementTree.fromstring(response_dict["body"])
    except ElementTree.ParseError:
        # As botocore's check: a body cut short by the network is a 500, tried again.
        response_dict["status_code"] = 500
        return
    if root.tag == "Error":
        response_dict["status_code"] = 500
        return
    _take(root, response_dict, customized_response_dict)


def _take(
    root: ElementTree.Element,
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
) -> None:
    namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    tag = f"{namespace}Contents"
    contents = [_object(element, len(namespace)) for element in root if element.tag == tag]
    if not contents:
        return
    root[:] = [element for element in root if element.tag != tag]
    response_dict["body"] = ElementTree.tostring(root)
    customized_response_dict["Contents"] = contents


def _object(element: ElementTree.Element, cut: int) -> dict[str, Any]:
    """One ``Contents`` as botocore gives it: the fields storsync reads typed as botocore
    types them, any other as text."""
    found: dict[str, Any] = {}
    for child in element:
        name, text = child.tag[cut:], child.text or ""
        if name == "Size":
            found[name] = int(text)
        elif name == "LastModified":
            found[name] = timestamp(text)
        elif len(child):
            continue  # Owner, RestoreStatus: structures storsync never reads
        else:
            found[name] = text
    return found
