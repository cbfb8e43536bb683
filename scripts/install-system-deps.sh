#!/usr/bin/env bash
# Install the Debian packages the integration tests need and pip cannot provide:
# PostgreSQL 15 (initdb/pg_ctl) and PostGIS 3 for the pgstac STAC API started by devservers.pgstac, and
# docker-registry (CNCF distribution) for the OCI push/pull tests started by devservers.registry.
#
# Idempotent: does nothing (and needs no network) when all are already present.
# Must run as root on Debian 12 (bookworm), where these exact package names exist.
# Env: PGBIN (default /usr/lib/postgresql/15/bin), PGSHARE (default /usr/share/postgresql/15).
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGSHARE=${PGSHARE:-/usr/share/postgresql/15}
PACKAGES=(postgresql-15 postgresql-15-postgis-3 docker-registry)

have_initdb() { [ -x "$PGBIN/initdb" ]; }
have_postgis() { [ -f "$PGSHARE/extension/postgis.control" ]; }
have_registry() { [ -x /usr/bin/docker-registry ]; }

if have_initdb && have_postgis && have_registry; then
  echo "install-system-deps: nothing to do ($PGBIN/initdb, the postgis extension and docker-registry are installed)"
  exit 0
fi

missing=()
have_initdb || missing+=("$PGBIN/initdb")
have_postgis || missing+=("$PGSHARE/extension/postgis.control")
have_registry || missing+=(/usr/bin/docker-registry)
echo "install-system-deps: missing ${missing[*]}"

if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: must run as root to install packages; run:" >&2
  echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: apt-get not found; install PostgreSQL 15, PostGIS 3 and docker-registry with your package manager" >&2
  exit 1
fi

echo "install-system-deps: apt-get update"
apt-get update -q
echo "install-system-deps: apt-get install ${PACKAGES[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"

# Debian's package also creates a default cluster "15/main" (port 5432; started only where an init system
# runs). The tests never use it: devservers.pgstac runs its own throw-away cluster on a free port.
have_initdb || { echo "install-system-deps: $PGBIN/initdb still missing after install" >&2; exit 1; }
have_postgis || { echo "install-system-deps: postgis extension still missing after install" >&2; exit 1; }
# docker-registry's package enables a systemd unit (port 5000, htpasswd auth); the tests never use it:
# devservers.registry runs its own server on 127.0.0.1:<free port> with a temp storage folder.
have_registry || { echo "install-system-deps: /usr/bin/docker-registry still missing after install" >&2; exit 1; }
echo "install-system-deps: installed ${PACKAGES[*]}"
