#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs every check:
# ruff (lint and format), mypy strict on src/, and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
