#!/usr/bin/env bash
# Sets up and starts the storsync service on its embedded defaults: SQLite in the data
# directory (STORSYNC_DATA_DIR, default ./storsync-data) and a default repository that
# syncs storsync-local/ two ways with a local repository storsync-remote/, both inside it.
# It listens on http://127.0.0.1:4443 and prints the admin password on its first start
# (or takes STORSYNC_ADMIN_PASSWORD). Extra arguments go to `storsync serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
data="${STORSYNC_DATA_DIR:-$PWD/storsync-data}"
mkdir -p "$data/storsync-local" "$data/storsync-remote"
if [ -z "$(ls -A "$data/storsync-local")" ] && [ -z "$(ls -A "$data/storsync-remote")" ]; then
    echo "hello from the local side" > "$data/storsync-local/hello-local.txt"
    echo "hello from the remote side" > "$data/storsync-remote/hello-remote.txt"
fi
exec .venv/bin/storsync serve --data-dir "$data" "$@"
