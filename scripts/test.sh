#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs every check:
# ruff (lint and format), mypy strict on src/, and the whole pytest suite. The browser
# tests drive Debian's chromium (scripts/chromium.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/chromium.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# Two workers (this machine's cores), a module's tests on one worker: module-scoped
# servers start once, and most tests wait on servers and sessions more than they compute.
.venv/bin/pytest -n "${STORSYNC_TEST_WORKERS:-2}" --dist loadfile "$@"
