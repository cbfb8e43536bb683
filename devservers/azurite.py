"""A real Azure Blob Storage server for tests: Azurite (npm ``azurite``, Microsoft's emulator) on 127.0.0.1.

Neither PyPI nor apt ships an Azure Storage server and there is no Docker on the target machines, so
``scripts/azurite.sh`` installs a pinned Azurite with npm into ``.cache/azurite``. Only the blob service is
started (``azurite-blob``), on a free port, with its data and access log in a scratch folder.

Flags, and why:

* ``--blobHost 127.0.0.1``: never on another interface; ``--disableTelemetry``: no calls home.
* ``--location DIR``: blobs on disk in the scratch folder, not in memory (by default Azurite may hold up to
  half the machine's RAM in memory; ``--inMemoryPersistence`` cannot be combined with ``--location``).
* ``--loose``: Azurite refuses headers it does not implement instead of ignoring them, as Azure does.
* ``--skipApiVersionCheck``: clients (obstore's Rust client, azure-storage-blob) may send an
  ``x-ms-version`` newer than the pinned Azurite knows.

Azurite loads ~450 npm packages before it listens: allow it tens of seconds on a busy machine.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devservers import process

log = logging.getLogger("devservers")

#: the emulator's one built-in account and its well-known key (public, documented by Microsoft)
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO_ROOT = Path(__file__).resolve().parents[1]
#: where ``scripts/azurite.sh`` installs it (``npm --prefix .cache/azurite``)
INSTALLED = REPO_ROOT / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class AzuriteServer:
    """Where and how to reach an Azurite blob service: path-style, ``{blob_endpoint}/{container}/{blob}``."""

    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account_name: str
    account_key: str
    root: Path  # scratch folder: blobs in data/, the access log in azurite.log

    @property
    def connection_string(self) -> str:
        """For azure-storage-blob's ``BlobServiceClient.from_connection_string`` (setup and inspection)."""
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};")

    def obstore_config(self) -> dict[str, Any]:
        """Keyword ``config`` for ``obstore.store.AzureStore(container, config=...)`` with the account key.

        An explicit ``endpoint`` rather than ``use_emulator``: the emulator switch assumes port 10000 (or
        ``AZURITE_BLOB_STORAGE_URL``) and ignores credential providers.
        """
        return {"account_name": self.account_name, "account_key": self.account_key,
                "endpoint": self.blob_endpoint}


def azurite_executable() -> Path:
    """``$AZURITE_BLOB``, else the copy ``scripts/azurite.sh`` installs, else ``azurite-blob`` on PATH."""
    override = os.environ.get("AZURITE_BLOB")
    candidates = [Path(override)] if override else [INSTALLED]
    found = shutil.which("azurite-blob")
    if found and not override:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    where = f"AZURITE_BLOB={override}" if override else f"{INSTALLED} or PATH"
    raise process.DevServerError(
        f"Azurite 'azurite-blob' not found ({where}): run `bash scripts/azurite.sh` (npm install of a pinned "
        "azurite into .cache/azurite; needs node and npm), or `make system-deps`"
    )


def _command(executable: Path, workdir: Path, port: int) -> list[str]:
    return [str(executable), "--blobHost", "127.0.0.1", "--blobPort", str(port),
            "--location", str(workdir / "data"), "--loose", "--skipApiVersionCheck", "--disableTelemetry"]


def _is_azurite(url: str) -> bool:
    """Whether ``url`` is answered by Azurite's blob service (an unsigned request gets a 403 from it)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            server = response.headers.get("Server", "")
    except urllib.error.HTTPError as e:
        server = e.headers.get("Server", "")
    except OSError:
        return False
    return server.startswith("Azurite-Blob")


@contextmanager
def azurite(workdir: Path, *, executable: Path | None = None, start_timeout: float = 120) -> Iterator[AzuriteServer]:
    """Run ``azurite-blob`` with blobs and log (``azurite.log``) in ``workdir``; yield how to reach it.

    Ready when the account URL answers (403 to an unsigned listing) with Azurite's ``Server`` header, so a
    stranger that grabbed the port in the meantime is not mistaken for it. Stopped by PID on exit: SIGTERM,
    SIGKILL after 10 s.
    """
    executable = executable or azurite_executable()
    workdir = Path(workdir).resolve()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    port = process.free_port()
    log_path = workdir / "azurite.log"
    t0 = time.monotonic()
    proc = process.start(_command(executable, workdir, port), log_path=log_path, cwd=workdir)
    try:
        endpoint = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"
        probe = f"{endpoint}?comp=list"
        process.wait_http(probe, timeout=start_timeout, proc=proc, ok=(403,), log_path=log_path)
        if not _is_azurite(probe):
            raise process.DevServerError(f"port {port} is answered by something other than Azurite: retry\n"
                                         + process.tail(log_path))
        log.info("azurite pid %d ready at %s in %.2f s", proc.pid, endpoint, time.monotonic() - t0)
        yield AzuriteServer(endpoint, ACCOUNT_NAME, ACCOUNT_KEY, workdir)
    finally:
        took = process.stop(proc, timeout=STOP_TIMEOUT, what="azurite-blob")
        log.info("azurite pid %d stopped in %.2f s", proc.pid, took)
