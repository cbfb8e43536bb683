"""A real STAC API for tests: stac-fastapi-pgstac on a throw-away PostgreSQL 15 + PostGIS + pgstac.

Why each step is done the way it is (details in the project notes on STAC APIs):

* PostgreSQL refuses to run as root, so as root initdb/pg_ctl run as ``postgres`` via ``runuser``;
  that user must be able to traverse to its data directory, which pytest's 0700 temp dirs forbid.
  The cluster therefore lives in its own ``tempfile.mkdtemp`` directory (chmod 755, short path: the
  unix socket path must fit in 107 bytes), removed on exit after its logs are copied to ``workdir``.
* ``fsync=off`` etc.: the data is throw-away; it makes loading several times faster.
* ``context=on``: without it searches carry no ``numberMatched`` and pystac-client's ``matched()``
  is None.
* pgstac refuses items whose collection does not exist: every collection named by the items gets a
  real document when one is given, else a stub (:func:`devservers.stacdata.collection_stub`).
* uvicorn binds 127.0.0.1 (``python -m stac_fastapi.pgstac.app`` binds 0.0.0.0) and runs with
  cwd = ``workdir``, because its settings also read a ``.env`` from the working directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from devservers import process, stacdata
from devservers.process import DevServerError

log = logging.getLogger("devservers")

PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
APT_HINT = (
    "run scripts/install-system-deps.sh as root, or: apt-get install -y --no-install-recommends "
    "postgresql-15 postgresql-15-postgis-3"
)
_PG_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _as_postgres(cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
    """As root, run ``cmd`` as user postgres (PostgreSQL refuses root); otherwise as the current user."""
    args = [str(c) for c in cmd]
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def check_prerequisites(pgbin: Path = PGBIN) -> None:
    """Raise :class:`DevServerError` naming the fix if PostgreSQL, PostGIS or the Python packages are missing."""
    if not (pgbin / "initdb").is_file():
        raise DevServerError(f"{pgbin / 'initdb'} not found (PostgreSQL 15 server not installed): {APT_HINT}")
    try:
        sharedir = subprocess.run(
            [str(pgbin / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sharedir = "/usr/share/postgresql/15"
    if not (Path(sharedir) / "extension" / "postgis.control").is_file():
        raise DevServerError(f"PostGIS extension not found in {sharedir}/extension: {APT_HINT}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise DevServerError(f"running as root but there is no 'postgres' user: {APT_HINT}") from None
    missing = [
        m
        for m in ("pypgstac", "stac_fastapi.pgstac", "uvicorn", "psycopg")
        if not importlib.util.find_spec(m)
    ]
    if missing:
        raise DevServerError(
            f"{', '.join(missing)} not importable from {sys.executable}: "
            'pip install "stac-fastapi-pgstac[server]==7.2.0" "pypgstac[psycopg]==0.10.0"'
        )


def _pg_env(port: int) -> dict[str, str]:
    """Environment for pypgstac and stac-fastapi-pgstac: they read the libpq PG* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGHOST="127.0.0.1", PGPORT=str(port), PGUSER="postgres", PGPASSWORD="unused", PGDATABASE="postgres"
    )
    return env


def _pg_stop(pgbin: Path, data: Path, setup_log: Path) -> None:
    """``pg_ctl stop -m fast``; if that fails, SIGQUIT (immediate shutdown) the postmaster by its PID."""
    pidfile = data / "postmaster.pid"
    if not pidfile.exists():
        return
    t0 = time.monotonic()
    try:
        process.run(
            _as_postgres([pgbin / "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop"]),
            log_path=setup_log,
            timeout=40,
            what="pg_ctl stop",
        )
    except DevServerError as e:
        log.warning("%s", e)
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if not process.stop_pid(pid, sig=signal.SIGQUIT, timeout=10):
            log.error("postgres pid %d is still running", pid)
    log.info("pgstac: postgres stopped in %.2f s", time.monotonic() - t0)


def _remove_cluster(pgdir: Path, workdir: Path) -> None:
    """Keep the PostgreSQL log for debugging, then delete the cluster directory."""
    for name in ("pg.log",):
        if (pgdir / name).exists():
            shutil.copyfile(pgdir / name, workdir / name)
    shutil.rmtree(pgdir, ignore_errors=True)


def _concat(files: Sequence[Path], out: Path) -> None:
    """One ndjson file for ``pypgstac load items`` (one process instead of one per file)."""
    with open(out, "wb") as dst:
        for f in files:
            with open(f, "rb") as src:
                shutil.copyfileobj(src, dst)
                if src.tell() == 0:
                    continue
                src.seek(-1, os.SEEK_END)
                if src.read(1) != b"\n":  # a file without a final newline would glue two items together
                    dst.write(b"\n")


@contextmanager
def pgstac_api(
    workdir: Path,
    items: list[Path],
    collection_docs: Path | None = None,
    *,
    api_env: Mapping[str, str] | None = None,
    start_timeout: float = 120,
) -> Iterator[str]:
    """Start PostgreSQL + pgstac + stac-fastapi-pgstac loaded with ``items``; yield ``http://127.0.0.1:<port>``.

    ``items``: ndjson files. ``collection_docs``: a directory of collection ``*.json`` documents or a
    JSON file (one or a list); collections without a document get a stub. ``api_env``: extra settings
    for the API (e.g. ``ENABLE_TRANSACTIONS_EXTENSIONS=TRUE``). Logs (``setup.log``, ``pg.log``,
    ``api.log``) stay in ``workdir``. Everything started is stopped on exit, also when startup fails.
    """
    check_prerequisites()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    setup_log = workdir / "setup.log"
    timings: dict[str, float] = {}
    t = time.monotonic()

    def lap(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        timings[name] = now - t
        t = now

    all_items = workdir / "items.ndjson"
    _concat([Path(p) for p in items], all_items)
    colls = workdir / "collections.ndjson"
    stacdata.write_ndjson(colls, stacdata.collections_for([all_items], collection_docs))
    lap("prepare")

    pg_port, api_port = process.free_ports(2)
    env = _pg_env(pg_port)
    with ExitStack() as stack:
        pgdir = Path(tempfile.mkdtemp(prefix="devservers-pg-"))
        stack.callback(_remove_cluster, pgdir, workdir)
        pgdir.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(pgdir, "postgres", "postgres")
        data = pgdir / "data"
        initdb = [
            PGBIN / "initdb",
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
        process.run(_as_postgres(initdb), log_path=setup_log, what="initdb")
        lap("initdb")
        opts = f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {pgdir} {_PG_OPTIONS}"
        stack.callback(_pg_stop, PGBIN, data, setup_log)
        process.run(
            _as_postgres(
                [PGBIN / "pg_ctl", "-D", data, "-l", pgdir / "pg.log", "-w", "-t", "60", "-o", opts, "start"]
            ),
            log_path=setup_log,
            what=f"postgres on port {pg_port} (port taken? see {workdir / 'pg.log'})",
        )
        lap("postgres start")

        pypgstac = [sys.executable, "-m", "pypgstac.pypgstac"]
        process.run([*pypgstac, "migrate"], log_path=setup_log, env=env, what="pypgstac migrate")
        _enable_context(pg_port)
        lap("pypgstac migrate")
        process.run(
            [*pypgstac, "load", "collections", colls, "--method", "insert_ignore"],
            log_path=setup_log,
            env=env,
            what="pypgstac load collections",
        )
        process.run(
            [*pypgstac, "load", "items", all_items, "--method", "insert_ignore"],
            log_path=setup_log,
            env=env,
            what="pypgstac load items",
        )
        lap("pypgstac load")

        api_log = workdir / "api.log"
        app = "stac_fastapi.pgstac.app:create_app"
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
        ]
        cmd += ["--log-level", "warning"]
        api = process.start(cmd, log_path=api_log, env={**env, **(api_env or {})}, cwd=workdir)
        stack.callback(_stop_api, api)
        url = f"http://127.0.0.1:{api_port}"
        process.wait_http(f"{url}/_mgmt/ping", timeout=start_timeout, proc=api, log_path=api_log)
        lap("uvicorn ready")
        log.info(
            "pgstac API %s ready (postgres port %d, api pid %d): %s",
            url,
            pg_port,
            api.pid,
            ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()),
        )
        yield url


def _stop_api(api: subprocess.Popen[bytes]) -> None:
    took = process.stop(api, timeout=10, what="uvicorn")
    log.info("pgstac: uvicorn pid %d stopped in %.2f s", api.pid, took)


def _enable_context(port: int) -> None:
    """Make searches report ``numberMatched`` (pgstac's ``context`` setting)."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(
            "INSERT INTO pgstac.pgstac_settings (name, value) VALUES ('context', 'on') "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        )
