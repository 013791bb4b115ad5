"""The HTTP faces: native /api/v1, PLM /api/media-manager/v0, Veeam /v6 (API.md)."""
