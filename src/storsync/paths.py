"""Relative paths as storsync names them: '/'-separated, NFC, safe on any local disk."""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Iterable, Set

OWN_DIR = ".storsync"
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def refusal(raw: str, *, max_name_bytes: int = MAX_NAME_BYTES) -> str | None:
    """Why ``raw`` is not a safe relative path, or None when it is.

    A safe path names a place strictly inside a root: not absolute, no ``.`` or ``..``
    component, no empty component, no NUL or control character, valid UTF-8, and within
    the name and path lengths that local file systems accept.
    """
    if not raw:
        return "empty name"
    if raw.startswith("/"):
        return "absolute path"
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"path longer than {MAX_PATH_BYTES} bytes"
    if _CONTROL.search(raw):
        return "name contains a control character"
    for part in raw.split("/"):
        if part in ("", ".", ".."):
            return "path has an empty, '.' or '..' component"
        if len(part.encode("utf-8")) > max_name_bytes:
            return f"a component is longer than {max_name_bytes} bytes"
    return None


def normalize(raw: str) -> str:
    """The key a path is compared under on both sides: Unicode NFC."""
    return raw if raw.isascii() else unicodedata.normalize("NFC", raw)


def is_own(path: str) -> bool:
    """Whether a path lies in a ``.storsync`` directory at any depth (never synchronized)."""
    return f"/{OWN_DIR}/" in f"/{path}/"


def parents(path: str) -> list[str]:
    """The directories a path implies, nearest last: ``a/b/c`` -> ``['a', 'a/b']``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def outermost(paths: Iterable[str]) -> list[str]:
    """The paths none of the others lies under, in order: ``a``, ``a/b``, ``c`` -> ``a``, ``c``."""
    kept: list[str] = []
    # By components, so that what lies under a path comes right after it.
    for path in sorted(set(paths), key=lambda p: p.split("/")):
        if not kept or not path.startswith(kept[-1] + "/"):
            kept.append(path)
    return kept


def within(path: str, tops: Set[str]) -> bool:
    """Whether ``path`` is one of ``tops`` or lies under one of them."""
    return path in tops or any(folder in tops for folder in parents(path))


def conflict_name(path: str, stamp: str, side: str) -> str:
    """``dir/NAME.conflict-YYYYMMDD-HHMMSS-<side>.EXT`` for a version kept beside ``path``."""
    head, name = posixpath.split(path)
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dotfile such as ".bashrc"
        stem, dot, ext = name, "", ""
    renamed = f"{stem}.conflict-{stamp}-{side}{dot}{ext}"
    return posixpath.join(head, renamed) if head else renamed
