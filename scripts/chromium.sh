#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests (Playwright drives it by
# its path: no browser is downloaded). Called by scripts/test.sh; safe to run again.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    prefix=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    prefix=(sudo -n)
else
    echo "chromium is missing and installing it needs root: apt-get install -y chromium" >&2
    exit 0  # the browser tests then fail, saying so
fi
apt=("${prefix[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600)
echo "installing chromium: apt-get install -y chromium (once; takes a while)" >&2
if ! "${apt[@]}" install --no-install-recommends chromium >/dev/null; then
    "${apt[@]}" update >/dev/null  # a fresh image has no package lists yet
    "${apt[@]}" install --no-install-recommends chromium >/dev/null
fi
