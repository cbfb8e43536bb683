"""An OCI registry on 127.0.0.1 for the push/pull tests: Debian's ``docker-registry`` (CNCF distribution).

``apt-get install -y docker-registry`` (``scripts/install-system-deps.sh`` does it) puts the
``/usr/bin/docker-registry`` binary on the machine. The package also enables a systemd unit on port
5000 with htpasswd auth; we never use it: :func:`oci_registry` runs its own server from a config
written here, bound to 127.0.0.1 on a free port, with filesystem storage in a temp dir and no auth,
and stops it by its PID.

Blobs live at ``<storage>/docker/registry/v2/blobs/sha256/<2 hex>/<64 hex>/data``
(:meth:`OciRegistry.blob_path`), which is how a test tampers with one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devservers import process
from devservers.process import DevServerError

log = logging.getLogger("devservers")

REGISTRY_BIN = "/usr/bin/docker-registry"
INSTALL_HINT = "apt-get install -y docker-registry (or: sudo scripts/install-system-deps.sh)"
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class OciRegistry:
    """A running registry: ``host`` is ``127.0.0.1:<port>`` (what oras and ``stac-packager push`` take)."""

    host: str
    storage: Path
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the bytes of ``sha256:<hex>``."""
        algo, _, hexdigest = digest.partition(":")
        return self.storage / "docker/registry/v2/blobs" / algo / hexdigest[:2] / hexdigest / "data"


def find_registry() -> Path:
    exe = os.environ.get("DOCKER_REGISTRY_BIN") or REGISTRY_BIN
    if Path(exe).is_file():
        return Path(exe)
    on_path = shutil.which("docker-registry")
    if on_path:
        return Path(on_path)
    raise DevServerError(f"the OCI registry binary {exe} was not found: {INSTALL_HINT}")


def _config(port: int, storage: Path) -> str:
    # http.secret only signs upload-session state; a fixed value is fine for a loopback test server
    return "\n".join([
        "version: 0.1",
        "log: {level: info, accesslog: {disabled: true}}",
        "storage:",
        f"  filesystem: {{rootdirectory: {storage}}}",
        "  delete: {enabled: true}",
        "  maintenance: {uploadpurging: {enabled: false}}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: stac-packager-devserver",
        "",
    ])


@contextmanager
def oci_registry(workdir: Path | None = None, *, start_timeout: float = 30) -> Iterator[OciRegistry]:
    """Run ``docker-registry serve`` on 127.0.0.1:<free port>, no auth; yield an :class:`OciRegistry`.

    Storage, config and log live in ``workdir`` (a temp dir, removed on exit, when not given). The
    server is stopped by its PID on exit, also when startup fails.
    """
    exe = find_registry()
    own_dir = workdir is None
    base = Path(tempfile.mkdtemp(prefix="devservers-registry-")) if own_dir else Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    storage, log_path, config_path = base / "storage", base / "registry.log", base / "config.yml"
    storage.mkdir(exist_ok=True)
    try:
        proc = None
        t0 = time.monotonic()
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = process.free_port()
            config_path.write_text(_config(port, storage))
            proc = process.start([exe, "serve", config_path], log_path=log_path,
                                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            try:
                process.wait_http(f"http://127.0.0.1:{port}/v2/", timeout=start_timeout, proc=proc,
                                  log_path=log_path)
                break
            except DevServerError:
                process.stop(proc, what="docker-registry")
                if attempt == _START_ATTEMPTS:
                    raise
                log.warning("docker-registry on port %d exited at startup (port taken?), retrying", port)
            except BaseException:
                process.stop(proc, what="docker-registry")
                raise
        assert proc is not None
        server = OciRegistry(host=f"127.0.0.1:{port}", storage=storage, pid=proc.pid)
        log.info("OCI registry %s ready in %.2f s (pid %d)", server.url, time.monotonic() - t0, proc.pid)
        try:
            yield server
        finally:
            took = process.stop(proc, what="docker-registry")
            log.info("docker-registry pid %d stopped in %.2f s", proc.pid, took)
    finally:
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)
