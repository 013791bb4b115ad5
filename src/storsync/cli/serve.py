"""`storsync serve`: the service on its settings (flags, STORSYNC_*, a TOML file)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 4443).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Database, keys and the embedded default repository ($STORSYNC_DATA_DIR).",
)
@click.option(
    "--local",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local directory of the default repository (with --remote).",
)
@click.option("--remote", default=None, help="Remote of the default repository (with --local).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--tls-self-signed",
    is_flag=True,
    default=None,
    help="Serve HTTPS with a certificate generated once into the data directory.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A TOML file of settings ($STORSYNC_CONFIG).",
)
def serve(config_file: Path | None, **flags: object) -> None:
    """Run the service: the native API, the PLM and Veeam faces (API.md).

    Every setting may also come from a STORSYNC_<NAME> variable (for example
    STORSYNC_DATABASE_URL, STORSYNC_ADMIN_PASSWORD) or the TOML file; flags win.
    """
    import os

    from storsync.api.serve import serve as run_server
    from storsync.config import load_settings

    settings = load_settings(flags, os.environ, config_file=config_file)
    if settings.local is not None:
        settings.local.mkdir(parents=True, exist_ok=True)
    run_server(settings)


# -- client commands against a running server ------------------------------------------
