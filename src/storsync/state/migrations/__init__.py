"""Alembic migrations, one named file a schema change.

HEAD names the newest revision, so that opening an up-to-date database costs one query
instead of loading the migration scripts; a test checks it against the scripts.
"""

HEAD = "0014_base_in_path_order"
