#!/usr/bin/env bash
# Refetches the assets of /docs (swagger-ui-dist) and /redoc (Redoc's standalone bundle)
# from npm into src/storsync/api/static/vendor/, with their licenses, and records what was
# taken in its VERSIONS file. Usage: scripts/vendor-docs-assets.sh [SWAGGER_UI REDOC]
# (npm versions or ranges; default: the newest 5.x and 2.x). Needs npm and python3.
# Files are copied byte for byte; source maps and the other builds are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
swagger_ui="${1:-5}"
redoc="${2:-2}"
vendor="$PWD/src/storsync/api/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm pack checks each tarball against the registry's integrity hash.
(cd "$work" && npm pack --json --silent "swagger-ui-dist@$swagger_ui" "redoc@$redoc") \
    >"$work/packed.json"
python3 - "$work/packed.json" >"$work/VERSIONS" <<'EOF'
import json, sys
print("# Written by scripts/vendor-docs-assets.sh: npm package@version, tarball integrity.")
for package in json.load(open(sys.argv[1])):
    print(package["id"], package["integrity"])
EOF
for tarball in "$work"/*.tgz; do
    mkdir -p "${tarball%.tgz}" && tar -xzf "$tarball" -C "${tarball%.tgz}"
done
ui="$(echo "$work"/swagger-ui-dist-*/package)"
rd="$(echo "$work"/redoc-*/package)"
test -f "$rd/bundles/redoc.standalone.js" || {
    echo "this Redoc has no bundles/redoc.standalone.js; pick a 2.x version" >&2
    exit 1
}

rm -rf "$vendor"
mkdir -p "$vendor/swagger-ui" "$vendor/redoc"
cp "$ui"/{swagger-ui-bundle.js,swagger-ui-bundle.js.LICENSE.txt,swagger-ui.css} "$vendor/swagger-ui/"
cp "$ui"/{favicon-32x32.png,LICENSE,NOTICE} "$vendor/swagger-ui/"
cp "$rd"/bundles/{redoc.standalone.js,redoc.standalone.js.LICENSE.txt} "$vendor/redoc/"
# The search worker is inlined in the standalone bundle; its licenses stay beside it.
cp "$rd"/bundles/*.worker.js.LICENSE.txt "$rd/LICENSE" "$vendor/redoc/"
# The one change to a vendored byte: Redoc's menu shows Redocly's badge from
# cdn.redoc.ly, which the page must not request; an empty src makes it hide itself.
badge='src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'
grep -qF "$badge" "$vendor/redoc/redoc.standalone.js" || {
    echo "Redoc's badge URL moved: look for cdn.redoc.ly in the bundle" >&2
    exit 1
}
sed -i "s|$badge|src:\"\"|" "$vendor/redoc/redoc.standalone.js"
echo "redoc.standalone.js: the badge's cdn.redoc.ly image URL emptied" >>"$work/VERSIONS"
cp "$work/VERSIONS" "$vendor/VERSIONS"
cat "$vendor/VERSIONS"
echo "Now update the versions in docs/decisions.md (\"Offline /docs and /redoc\") and run"
echo "tests/test_api_docs.py."
