"""storsync: keeps a local directory and a remote storage synchronized in both directions."""

__version__ = "0.1.0"
