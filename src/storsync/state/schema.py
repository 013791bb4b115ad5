"""The tables, as SQLAlchemy Core metadata; migrations create them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, MetaData, String, Table, Text

metadata = MetaData()

repositories = Table(
    "repositories",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("local_url", Text, nullable=False),
    Column("remote_url", Text, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)

base = Table(
    "base",
    metadata,
    Column("repository_id", String(36), primary_key=True),
    Column("path", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("hash", String(64)),
    Column("executable", Boolean, nullable=False),
    Column("local_mtime_ns", BigInteger, nullable=False),
    Column("local_inode", BigInteger),
    Column("local_etag", Text),
    Column("remote_mtime_ns", BigInteger, nullable=False),
    Column("remote_inode", BigInteger),
    Column("remote_etag", Text),
)
