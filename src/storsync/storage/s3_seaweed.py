"""What SeaweedFS, unlike S3, needs: folders that outlive their last object."""

from __future__ import annotations

from typing import Any

from storsync.storage.s3_client import S3Bucket


def drop_empty_folders(client: Any, bucket: S3Bucket, key: str, path: str) -> bool:
    """Delete the empty folders named ``key`` and below it; False if an object is below it.

    SeaweedFS keeps a folder after its last object is deleted, and refuses a create
    (``If-None-Match: *``) of the folder's name with 412 while it is there, which would
    fail that file in every session. Only when no object is at ``path`` (the caller's to
    check) nor under ``path/`` (a folder marker included) are the folders deleted by name,
    deepest first; SeaweedFS keeps a folder that got an object meanwhile, so a concurrent
    writer still wins the create that follows.
    """
    with bucket.calling(path):
        below = client.list_objects_v2(Bucket=bucket.name, Prefix=f"{key}/", MaxKeys=1)
        if below.get("Contents"):
            return False
        folders, todo = [], [f"{key}/"]
        while todo:
            folder = todo.pop()
            folders.append(folder)
            listing = {"Bucket": bucket.name, "Prefix": folder, "Delimiter": "/"}
            for page in client.get_paginator("list_objects_v2").paginate(**listing):
                todo.extend(sub["Prefix"] for sub in page.get("CommonPrefixes", ()))
        for folder in reversed(folders):  # children before their parent
            client.delete_object(Bucket=bucket.name, Key=folder)
    return True
