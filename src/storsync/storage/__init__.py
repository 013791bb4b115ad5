"""Storages behind one small interface with declared capabilities."""
