#!/usr/bin/env bash
# Create (idempotently) a Python 3.13 virtualenv with the peer CLI stacpkg 0.1.4.
#
#   scripts/stacpkg-venv.sh [DEST]        (default: .cache/stacpkg-venv, relative to the CWD)
#
# stacpkg needs Python >=3.13,<3.14 while the project runs on 3.11, so it lives in its own venv and
# is only ever run as a subprocess (see tests/interop/test_stacpkg.py, which finds this venv at
# .cache/stacpkg-venv or $STACPKG_VENV). Re-running is cheap: if DEST/bin/stacpkg --help works,
# nothing is done. The interpreter is `python3.13` on PATH, else /root/.pyenv/versions/3.13*/bin/python3,
# or $STACPKG_PYTHON if set.
set -euo pipefail

STACPKG_VERSION="0.1.4"
DEST="${1:-.cache/stacpkg-venv}"

if [ -x "$DEST/bin/stacpkg" ] && "$DEST/bin/stacpkg" --help >/dev/null 2>&1; then
    echo "stacpkg-venv: $DEST already has a working stacpkg; nothing to do" >&2
    exit 0
fi

is_py313() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1
}

# Candidates in order; the first that actually runs as 3.13 wins. A pyenv shim named python3.13 can
# exist on PATH yet fail ("pyenv: python3.13: command not found" when 3.13 is not the active version),
# so every candidate is executed, not just located.
find_python() {
    local candidate
    if [ -n "${STACPKG_PYTHON:-}" ]; then
        if is_py313 "$STACPKG_PYTHON"; then echo "$STACPKG_PYTHON"; return 0; fi
        echo "stacpkg-venv: STACPKG_PYTHON=$STACPKG_PYTHON is not a working Python 3.13" >&2
        return 1
    fi
    if candidate="$(command -v python3.13 2>/dev/null)" && is_py313 "$candidate"; then
        echo "$candidate"; return 0
    fi
    for candidate in /root/.pyenv/versions/3.13*/bin/python3; do
        if [ -x "$candidate" ] && is_py313 "$candidate"; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

if ! PY="$(find_python)"; then
    cat >&2 <<MSG
stacpkg-venv: no working Python 3.13 interpreter found.
  stacpkg $STACPKG_VERSION requires Python >=3.13,<3.14; tried 'python3.13' on PATH and
  /root/.pyenv/versions/3.13*/bin/python3. Install one (e.g. 'pyenv install 3.13') or set
  STACPKG_PYTHON=/path/to/python3.13, then re-run: $0 ${1:-}
MSG
    exit 1
fi

echo "stacpkg-venv: creating $DEST with $PY ($("$PY" -V 2>&1))" >&2
start=$(date +%s.%N)
# --clear: a half-built venv from an interrupted run is rebuilt rather than trusted
"$PY" -m venv --clear "$DEST"
"$DEST/bin/python" -m pip install --quiet --disable-pip-version-check "stacpkg==$STACPKG_VERSION"
if ! "$DEST/bin/stacpkg" --help >/dev/null 2>&1; then
    echo "stacpkg-venv: installed stacpkg $STACPKG_VERSION into $DEST but '$DEST/bin/stacpkg --help' fails" >&2
    exit 1
fi
end=$(date +%s.%N)
printf 'stacpkg-venv: stacpkg %s ready in %s (%.1f s)\n' "$STACPKG_VERSION" "$DEST" \
    "$(echo "$end - $start" | bc 2>/dev/null || python3 -c "print($end - $start)")" >&2
