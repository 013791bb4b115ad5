"""Where an S3 remote is, beyond its URL: the options `sync` and `repo-add` take alike,
defaulting from the usual AWS variables (CLI.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def endpoint(*aliases: str) -> Callable[[Any], Any]:
    return click.option(
        "--s3-endpoint",
        *aliases,
        "s3_endpoint",
        envvar=["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
        metavar="URL",
        help="S3 endpoint (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS).",
    )


def region(*aliases: str) -> Callable[[Any], Any]:
    return click.option(
        "--s3-region",
        *aliases,
        "s3_region",
        envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
        metavar="REGION",
        help="S3 region (default: $AWS_REGION, else us-east-1).",
    )
