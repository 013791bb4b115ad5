#!/bin/bash
# One timed storsync run for ../shared/bench/run_peers.py (see bench/README.md).
#
#   storsync-bench.sh LOCAL REMOTE STATE [storsync sync options...]
#
# storsync keeps its own files in a top-level .storsync/ on each side (lock, root marker,
# trash, partial transfers). The harness verifies trees with `diff -rq` against a reference
# and mutates them with gen_tree.py, which would both see those files; so between runs the
# two .storsync/ folders are parked under STATE/park/ and put back before the next run
# (two renames per side, same file system, inside the timed command: ~5 ms in all).
set -u
LOCAL=$1 REMOTE=$2 STATE=$3
shift 3
BIN=${STORSYNC:-$(dirname "$0")/../.venv/bin/storsync}
# Run with compiled bytecode as an installed package would (this environment sets
# PYTHONDONTWRITEBYTECODE=1, which would bill ~0.2 s of recompilation to every run).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=${STORSYNC_PYCACHE:-/tmp/storsync-bench-pyc}
PARK=$STATE/park
[ -d "$PARK/local" ] && mv "$PARK/local" "$LOCAL/.storsync"
[ -d "$PARK/remote" ] && mv "$PARK/remote" "$REMOTE/.storsync"
rc=0
"$BIN" sync "$LOCAL" "$REMOTE" --state-dir "$STATE/db" --json "$@" >"$STATE/last.json" || rc=$?
cat "$STATE/last.json"
mkdir -p "$PARK"
[ -d "$LOCAL/.storsync" ] && mv "$LOCAL/.storsync" "$PARK/local"
[ -d "$REMOTE/.storsync" ] && mv "$REMOTE/.storsync" "$PARK/remote"
exit $rc
