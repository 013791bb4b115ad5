#!/bin/bash
# Run the shared harness with storsync as an extra tool, peers in the same run.
#
#   bash bench/run.sh [run_peers.py options...]
#
# Defaults: presets small,many,mixed; tools storsync + rclone-bisync, unison, find, rsync,
# rclone; kinds twoway-local, oneway-local, scan; results in bench/results/run-<ts>.jsonl.
# Any option given is passed on and overrides these (argparse: the last one wins).
set -eu
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-$PWD/../shared/bench}
PY=${BENCH_PY:-/tmp/bench-venv/bin/python}
[ -x "$PY" ] || bash "$HARNESS/setup.sh"
export STORSYNC_BENCH_DIR=$PWD/bench
export STORSYNC=$PWD/.venv/bin/storsync
export STORSYNC_PYCACHE=${STORSYNC_PYCACHE:-/tmp/storsync-bench-pyc}
# Compile storsync and its dependencies once, outside any timed command.
env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX="$STORSYNC_PYCACHE" "$STORSYNC" --version
mkdir -p bench/results
exec "$PY" "$HARNESS/run_peers.py" \
  --presets small,many,mixed \
  --tools storsync,rclone-bisync,unison,find,rsync,rclone \
  --kinds twoway-local,oneway-local,scan \
  --tools-file bench/tools.json \
  --out "bench/results/run-$(date +%Y%m%d-%H%M%S).jsonl" \
  "$@"
