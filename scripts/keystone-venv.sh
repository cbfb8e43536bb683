#!/usr/bin/env bash
# Create (idempotently) a virtualenv with a real OpenStack Keystone and a WSGI server for it.
#
#   scripts/keystone-venv.sh [DEST]        (default: .cache/keystone-venv, relative to the CWD)
#
# Keystone brings ~95 OpenStack packages (oslo.*, SQLAlchemy, Flask, pysaml2...) that the project's
# own venv must not carry, so it lives in its own venv and is only ever run as a subprocess
# (devservers/keystone.py finds it at .cache/keystone-venv or $KEYSTONE_VENV). Re-running is cheap:
# if DEST holds a working keystone-manage and gunicorn of the pinned versions, nothing is done.
# The interpreter is $KEYSTONE_PYTHON if set, else python3.11, else python3 (>= 3.10).
set -euo pipefail

KEYSTONE_VERSION="30.0.0"
GUNICORN_VERSION="27.0.1"
DEST="${1:-.cache/keystone-venv}"
STAMP="$DEST/.keystone-$KEYSTONE_VERSION-gunicorn-$GUNICORN_VERSION"

works() {
    [ -f "$STAMP" ] && [ -x "$DEST/bin/keystone-manage" ] && [ -x "$DEST/bin/gunicorn" ] \
        && "$DEST/bin/python" -c 'import keystone.server.wsgi, gunicorn' >/dev/null 2>&1
}

if works; then
    echo "keystone-venv: $DEST already has keystone $KEYSTONE_VERSION + gunicorn $GUNICORN_VERSION; nothing to do" >&2
    exit 0
fi

is_py_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    if [ -n "${KEYSTONE_PYTHON:-}" ]; then
        if is_py_ok "$KEYSTONE_PYTHON"; then echo "$KEYSTONE_PYTHON"; return 0; fi
        echo "keystone-venv: KEYSTONE_PYTHON=$KEYSTONE_PYTHON is not a working Python >= 3.10" >&2
        return 1
    fi
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py_ok "$(command -v "$candidate")"; then
            command -v "$candidate"; return 0
        fi
    done
    return 1
}

if ! PY="$(find_python)"; then
    echo "keystone-venv: no Python >= 3.10 found (tried python3.11, python3); set KEYSTONE_PYTHON" >&2
    exit 1
fi

echo "keystone-venv: creating $DEST with $PY ($("$PY" -V 2>&1))" >&2
start=$(date +%s.%N)
# --clear: a half-built venv from an interrupted run is rebuilt rather than trusted
"$PY" -m venv --clear "$DEST"
"$DEST/bin/python" -m pip install --quiet --disable-pip-version-check \
    "keystone==$KEYSTONE_VERSION" "gunicorn==$GUNICORN_VERSION" 2>&1 | grep -v "is ignored" >&2 || true
if ! "$DEST/bin/python" -c 'import keystone.server.wsgi, gunicorn' >/dev/null 2>&1 \
        || ! "$DEST/bin/keystone-manage" --help >/dev/null 2>&1; then
    echo "keystone-venv: installing keystone $KEYSTONE_VERSION into $DEST failed ('keystone-manage --help' or" \
         "'import keystone.server.wsgi, gunicorn' fails); see pip's output above" >&2
    exit 1
fi
touch "$STAMP"
end=$(date +%s.%N)
printf 'keystone-venv: keystone %s + gunicorn %s ready in %s (%.1f s)\n' "$KEYSTONE_VERSION" "$GUNICORN_VERSION" \
    "$DEST" "$(python3 -c "print($end - $start)")" >&2
