#!/usr/bin/env bash
# azurite.sh [DEST] — install (idempotently) a pinned Azurite, Microsoft's Azure Storage emulator, from npm.
#
#   bash scripts/azurite.sh              (default DEST: .cache/azurite, relative to the repository root)
#
# The Azure tests (tests/fixtures_azure.py, devservers/azurite.py) run `azurite-blob` from
# DEST/node_modules/.bin, or from $AZURITE_BLOB if set. There is no Azure Storage server on PyPI or apt, and
# no Docker on the target machines: npm is the one way in. The version is pinned so a test run does not
# change behaviour under us: 3.35.0 is the last Azurite that runs on the machines' node 20 (3.36 requires
# node >= 21, 3.37 node >= 22). Re-running is cheap: if the pinned version is installed, nothing is
# downloaded.
set -euo pipefail

cd "$(dirname "$0")/.."
AZURITE_VERSION="3.35.0"
DEST="${1:-.cache/azurite}"
BIN="$DEST/node_modules/.bin/azurite-blob"

# the package's own manifest: `azurite-blob --version` takes ~10 s (it loads the whole server first)
installed_version() {
    [ -x "$BIN" ] && node -p 'require(process.argv[1]).version' \
        "$(cd "$DEST" && pwd)/node_modules/azurite/package.json" 2>/dev/null
}

if [ "$(installed_version || true)" = "$AZURITE_VERSION" ]; then
    echo "azurite: $BIN is already $AZURITE_VERSION; nothing to do" >&2
    exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "azurite: node or npm not found; install node (>= 18) and npm, then re-run" >&2
    exit 1
fi

mkdir -p "$DEST"
# --no-save/--no-package-lock: DEST is a cache, not a project; --no-audit/--no-fund: no extra registry calls
npm install --prefix "$DEST" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION"

got="$(installed_version || true)"
if [ "$got" != "$AZURITE_VERSION" ]; then
    echo "azurite: expected azurite-blob $AZURITE_VERSION in $BIN, found '${got:-nothing}'" >&2
    exit 1
fi
echo "azurite $AZURITE_VERSION installed: $BIN" >&2
