"""Persistent state: repositories and their base, in SQLite or PostgreSQL."""
