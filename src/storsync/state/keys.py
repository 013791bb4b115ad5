"""The key of a base row: a path's SHA-256, since a path may be longer than an index allows.

A path may be 4,096 bytes of UTF-8 (storsync.paths.MAX_PATH_BYTES); PostgreSQL's
btree entries may not exceed 2,704 bytes. So the base's primary key is (repository_id,
path_key), the path itself a plain column (migration 0003_base_path_key). The key is
computed in Python by every store, the same on every database.
"""

from __future__ import annotations

from hashlib import sha256


def path_key(path: str) -> str:
    """The lowercase hex SHA-256 of ``path``'s UTF-8 bytes."""
    return sha256(path.encode("utf-8")).hexdigest()
