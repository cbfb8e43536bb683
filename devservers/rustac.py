"""A STAC API that installs from PyPI alone, for the demo: ``rustac serve`` (in-memory backend).

``pip install rustac==0.9.18`` ships a static binary as the console script ``rustac`` (there is no
``python -m rustac``). What it can and cannot do (project notes on STAC APIs, section b):

* POST ``/search`` with collections, bbox, intersects, datetime, ids, limit and paging works;
  pystac-client searches with POST by default. GET ``/search`` fails once a next link is needed,
  and query/filter/sortby/fields are silently ignored: keep the demo to POST searches.
* Collection documents must come before the items; ``--create-collections`` makes a collection for
  every other collection id. One bad item fails the whole load.
* Served items keep their own links and rustac appends its own: strip self/root/parent/collection
  links that point at public catalogs before loading (the demo data is stored that way).
* ``--use-duckdb false`` always: on a ``.parquet`` input rustac would otherwise use DuckDB, which
  downloads an extension at the first query (offline: every request hangs 30 s, then 500).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from devservers import process
from devservers.process import DevServerError

log = logging.getLogger("devservers")

RUSTAC_PIN = "rustac==0.9.18"
INSTALL_HINT = f'pip install "{RUSTAC_PIN}" (or: pip install -e ".[demo]")'
_START_ATTEMPTS = 3  # a free port can be taken before rustac binds it; retried only when we chose it


def find_rustac() -> Path:
    """The ``rustac`` console script next to the running Python (its venv), else on ``PATH``."""
    candidates = [Path(sys.executable).parent / "rustac"]
    on_path = shutil.which("rustac")
    if on_path:
        candidates.append(Path(on_path))
    for c in candidates:
        if c.is_file():
            return c
    raise DevServerError(
        f"the 'rustac' command was not found next to {sys.executable} nor on PATH: {INSTALL_HINT}"
    )


def _is_collection_doc(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("type") == "Collection"


def _ordered_inputs(inputs: Sequence[Path | str]) -> list[Path]:
    """Directories expanded to their ``*.json`` / ``*.ndjson`` files; collection documents first."""
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".json", ".ndjson"))
        elif p.is_file():
            files.append(p)
        else:
            raise DevServerError(f"rustac input {p} does not exist")
    if not files:
        raise DevServerError("rustac_api needs at least one collection or item file to serve")
    files = [f.resolve() for f in files]
    return sorted(files, key=lambda f: not _is_collection_doc(f))  # stable: order kept otherwise


def _check_port_free(port: int) -> None:
    """A fixed port must be free: otherwise whatever answers there would pass for our server."""
    with socket.socket() as s:
        # as a server binds: connections of a just-stopped server lingering in TIME_WAIT do not make the
        # port busy (without this, `make ui` right after `make demo` was refused)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise DevServerError(
                f"port {port} on 127.0.0.1 is in use ({e.strerror}): stop what runs there or pick another"
            ) from e


@contextmanager
def rustac_api(
    inputs: list[Path],
    *,
    port: int | None = None,
    workdir: Path | None = None,
    start_timeout: float = 30,
) -> Iterator[str]:
    """Serve ``inputs`` with ``rustac serve`` on 127.0.0.1; yield ``http://127.0.0.1:<port>``.

    ``inputs``: collection documents (``*.json``), item files (``.ndjson``, ``.json`` item
    collections) or directories of them. ``port``: a fixed port (the demo), else a free one. The
    server log (``rustac.log``) goes to ``workdir`` (a temporary directory, removed on exit, when
    not given). The server is stopped by its PID on exit, also when startup fails.
    """
    exe = find_rustac()
    files = _ordered_inputs(inputs)
    if port is not None:
        _check_port_free(port)
    own_dir = workdir is None
    logdir = Path(tempfile.mkdtemp(prefix="devservers-rustac-")) if own_dir else Path(workdir)
    logdir.mkdir(parents=True, exist_ok=True)
    log_path = logdir / "rustac.log"
    try:
        proc = url = None
        t0 = time.monotonic()
        for attempt in range(1, _START_ATTEMPTS + 1):
            p = port if port is not None else process.free_port()
            url = f"http://127.0.0.1:{p}"
            cmd = [
                exe,
                "serve",
                "--addr",
                f"127.0.0.1:{p}",
                "--use-duckdb",
                "false",
                "--create-collections",
                *files,
            ]
            proc = process.start(cmd, log_path=log_path)
            try:
                process.wait_http(f"{url}/", timeout=start_timeout, proc=proc, log_path=log_path)
                break
            except DevServerError:
                process.stop(proc, what="rustac")
                if port is not None or attempt == _START_ATTEMPTS:
                    raise
                log.warning("rustac on port %d exited at startup (port taken?), retrying on another", p)
            except BaseException:
                process.stop(proc, what="rustac")
                raise
        assert proc is not None and url is not None
        log.info(
            "rustac API %s ready in %.2f s (pid %d, %d input file(s))",
            url,
            time.monotonic() - t0,
            proc.pid,
            len(files),
        )
        try:
            yield url
        finally:
            took = process.stop(proc, what="rustac")
            log.info("rustac pid %d stopped in %.2f s", proc.pid, took)
    finally:
        if own_dir:
            shutil.rmtree(logdir, ignore_errors=True)
