#!/usr/bin/env bash
# Sets up and runs storsync on its embedded defaults: a folder storsync-local/ synced two
# ways with a local repository storsync-remote/, both inside the data directory
# (STORSYNC_DATA_DIR, default ./storsync-data). Extra arguments go to `storsync sync`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
data="${STORSYNC_DATA_DIR:-$PWD/storsync-data}"
mkdir -p "$data/storsync-local" "$data/storsync-remote"
if [ -z "$(ls -A "$data/storsync-local")" ] && [ -z "$(ls -A "$data/storsync-remote")" ]; then
    echo "hello from the local side" > "$data/storsync-local/hello-local.txt"
    echo "hello from the remote side" > "$data/storsync-remote/hello-remote.txt"
fi
exec .venv/bin/storsync sync "$data/storsync-local" "$data/storsync-remote" \
    --state-dir "$data/state" "$@"
