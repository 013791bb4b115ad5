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
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from storsync.storage.s3_client import timestamp

EVENT = "before-parse.s3"


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
    for field in element:
        name, text = field.tag[cut:], field.text or ""
        if name == "Size":
            found[name] = int(text)
        elif name == "LastModified":
            found[name] = timestamp(text)
        elif len(field):
            continue  # Owner, RestoreStatus: structures storsync never reads
        else:
            found[name] = text
    return found
