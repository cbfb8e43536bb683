"""Helpers for the crash/resume and concurrent-run tests: real objects, a real lock, the real CLI.

* :func:`make_objects` writes random objects (some larger than the relocation part size, so they go up
  as multipart uploads / large objects) into a bucket or a folder and returns what they should be.
* :func:`write_package` writes a package holding only ``assets.lock.parquet`` for them (with sha256).
* :func:`start_relocate` starts ``python -m packager.cli relocate`` as its own process (so a test can
  SIGKILL it), :func:`finish` waits for one and parses its JSON summary.
* :class:`WeedInstance` / :class:`WsgidavInstance`: a SeaweedFS / wsgidav server process of the test's
  own, restartable on the same ports and data directory (a killed *server*, not only a killed client).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devservers import process
from devservers.seaweedfs import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    S3Server,
    _command,
    _remove_grpc_sockets,
    weed_executable,
)
from packager.checksum import sha256_multihash_of
from packager.locations import Location, parse_href
from packager.lock import LockRow, lock_writer

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
PART = 5 * MiB
LEASE_KEY = ".stac-packager.lease"


@dataclass(frozen=True)
class Obj:
    key: str
    size: int
    sha256: str  # hex
    multihash: str


def payloads(n_small: int, n_large: int, *, seed: int = 9, small=(16 << 10, 400 << 10),
             large=(PART + 1, PART + 2 * MiB)) -> list[tuple[str, bytes]]:
    """(relative key, bytes): large objects spread evenly among the small ones."""
    rng = random.Random(seed)
    total = n_small + n_large
    step = max(1, total // max(1, n_large))
    large_at = {i * step + step // 2 for i in range(n_large)}
    out = []
    for i in range(total):
        size = rng.randint(*large) if i in large_at else rng.randint(*small)
        out.append((f"obj-{i:03d}.bin", os.urandom(size)))
    return out


def describe(items: list[tuple[str, bytes]]) -> dict[str, Obj]:
    return {k: Obj(k, len(b), hashlib.sha256(b).hexdigest(), sha256_multihash_of(b)) for k, b in items}


def make_objects_s3(client, bucket: str, prefix: str, items: list[tuple[str, bytes]]) -> dict[str, Obj]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=f"{prefix}/{kv[0]}", Body=kv[1]), items))
    return describe(items)


def make_objects_local(root: Path, items: list[tuple[str, bytes]]) -> dict[str, Obj]:
    root.mkdir(parents=True, exist_ok=True)
    for key, data in items:
        (root / key).write_bytes(data)
    return describe(items)


def write_package(pkg: Path, hrefs: dict[str, str], objects: dict[str, Obj], *, endpoint: str | None = None) -> Path:
    """A package folder whose assets.lock.parquet locks ``hrefs`` (relative key -> href) with sha256."""
    pkg.mkdir(parents=True, exist_ok=True)
    with lock_writer(pkg / "assets.lock.parquet") as writer:
        for key, href in sorted(hrefs.items()):
            loc = parse_href(href)
            if endpoint and loc.kind == "s3":
                loc = Location(loc.kind, loc.container, loc.key, endpoint)
            obj = objects[key]
            writer.write(LockRow("crash", Path(key).stem, "data", loc, href, "application/octet-stream",
                                 obj.size, None, None, obj.multihash).as_record())
    return pkg


def final_key(relative: str) -> str:
    """Where the default key template puts the object ``relative`` under the target."""
    return f"crash/{Path(relative).stem}/data{Path(relative).suffix}"


def by_final_key(objects: dict[str, Obj]) -> dict[str, Obj]:
    return {final_key(k): v for k, v in objects.items()}


def write_settings(path: Path, profiles: list[dict], **relocation) -> Path:
    settings = {"relocation": {"memory_limit_mib": 64, "chunk_size_mib": 5, "concurrency": 4, **relocation},
                "storage": {"profiles": profiles}}
    path.write_text(yaml.safe_dump(settings))
    return path


def s3_profile(name: str, bucket: str, s3: S3Server) -> dict:
    return {"name": name, "url": f"s3://{bucket}", "endpoint": s3.endpoint, "region": s3.region,
            "access_key_id": {"env": "CRASH_S3_KEY"}, "secret_access_key": {"env": "CRASH_S3_SECRET"},
            "max_retries": 10, "retry_timeout_seconds": 60}


def s3_inline(bucket: str, s3: S3Server, name: str | None = None) -> dict:
    """A storage profile for the driver (secrets inline: the config file is the test's own)."""
    return {"name": name or bucket, "url": f"s3://{bucket}", "endpoint": s3.endpoint, "region": s3.region,
            "access_key_id": s3.access_key_id, "secret_access_key": s3.secret_access_key,
            "max_retries": 10, "retry_timeout_seconds": 60}


def start_driver(workdir: Path, package: Path, target: str, profiles: list[dict], *, break_lease: bool = False,
                 env: dict[str, str] | None = None, **settings) -> Run:
    """``python -m tests.crash_driver``: the relocate command's engine calls, as a process of its own."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"driver-{time.monotonic_ns()}.json"
    config.write_text(json.dumps({"package": str(package), "target": target, "profiles": profiles,
                                  "settings": settings, "break_lease": break_lease}))
    full = [sys.executable, "-m", "tests.crash_driver", str(config)]
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env),
                            start_new_session=True, cwd=REPO)
    return Run(proc, ["driver", target])


def validate_deep(package: Path, profiles: list[dict]) -> dict:
    """Deep validation (every object re-read, sha256 compared) of the package's relocated lock, in process."""
    import tempfile

    from packager.profiles import StorageProfile
    from packager.stores import StoreRegistry
    from packager.validate import validate

    registry = StoreRegistry([StorageProfile(**p) for p in profiles])
    with tempfile.TemporaryDirectory() as scratch:
        summary = validate(package / "relocated" / "assets.lock.parquet", registry, Path(scratch) / "report.parquet",
                           deep=True)
    counts = {k: v for k, v in summary.counts.items() if v}
    return {"rows": summary.rows, "counts": counts, "clean": summary.clean, "bytes_read": summary.bytes_read}


def s3_env(s3: S3Server) -> dict[str, str]:
    return {"CRASH_S3_KEY": s3.access_key_id, "CRASH_S3_SECRET": s3.secret_access_key}


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STAC_PACKAGER_CONFIG"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


@dataclass
class Run:
    proc: subprocess.Popen
    args: list[str]
    started: float = field(default_factory=time.monotonic)
    stdout: str = ""
    stderr: str = ""

    def kill(self) -> None:
        """SIGKILL this process (its own PID only) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.stdout, self.stderr = self.proc.communicate(timeout=30)

    def finish(self, timeout: float = 120) -> tuple[int, dict | None]:
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"stac-packager {' '.join(self.args)} did not finish in {timeout} s\n"
                                 f"{self.stderr[-3000:]}") from None
        summary = None
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                summary = json.loads(line)
        return self.proc.returncode, summary

    def explain(self) -> str:
        return f"rc={self.proc.returncode}\n--- stdout ---\n{self.stdout[-2000:]}\n--- stderr ---\n{self.stderr[-3000:]}"


def start_cli(*args: str, env: dict[str, str] | None = None) -> Run:
    full = [sys.executable, "-m", "packager.cli", *args]
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env),
                            start_new_session=True)
    return Run(proc, list(args))


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict | None, Run]:
    run = start_cli(*args, env=env)
    rc, summary = run.finish(timeout)
    return rc, summary, run


def wait_until(predicate, *, timeout: float, interval: float = 0.02, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``predicate`` until true (True), the timeout passes or ``proc`` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        time.sleep(interval)
    return False


# -- S3 inspection ----------------------------------------------------------------------------------------
def s3_final_objects(client, bucket: str, prefix: str) -> dict[str, int]:
    """Relative key -> size of every object under ``prefix/`` (the lease object left out)."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix) + 1:]
            if rel != LEASE_KEY:
                out[rel] = o["Size"]
    return out


def s3_uploads(client, bucket: str, prefix: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/").get("Uploads", [])


def assert_s3_objects_whole(client, bucket: str, prefix: str, expected: dict[str, Obj]) -> int:
    """Every object at a final key has the full size and the right sha256; returns how many there are."""
    from concurrent.futures import ThreadPoolExecutor

    present = s3_final_objects(client, bucket, prefix)
    for rel, size in present.items():
        want = expected[rel]
        assert size == want.size, f"{rel}: partial object at the final key ({size} of {want.size} bytes)"

    def digest(rel: str) -> str:
        return hashlib.sha256(client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read()).hexdigest()

    with ThreadPoolExecutor(4) as pool:
        for rel, got in zip(present, pool.map(digest, present), strict=True):
            assert got == expected[rel].sha256, f"{rel}: wrong bytes at the final key"
    return len(present)


# -- restartable servers ----------------------------------------------------------------------------------
class WeedInstance:
    """``weed mini`` on fixed ports and a fixed data dir, so it can be killed and restarted as the same server."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "s3.json").write_text(json.dumps({"identities": [{
            "name": "tester", "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        keys = [k for n in ("master", "volume", "filer", "s3", "admin") for k in (n, n + "_grpc")]
        self.ports = dict(zip(keys, process.free_ports(len(keys)), strict=True))
        self.proc: subprocess.Popen | None = None
        self.server = S3Server(f"http://127.0.0.1:{self.ports['s3']}", ACCESS_KEY_ID, SECRET_ACCESS_KEY)
        self.starts = 0

    def start(self) -> None:
        log = self.workdir / "weed.log"
        self.proc = process.start(_command(weed_executable(), self.workdir, self.ports), log_path=log,
                                  env={**os.environ, "GOMEMLIMIT": "256MiB"}, cwd=self.workdir)
        self.starts += 1
        process.wait_http(f"{self.server.endpoint}/healthz", timeout=60, proc=self.proc, log_path=log)
        # the S3 gateway answers before the filer is ready for writes after a restart: wait for a real listing
        import boto3

        client = boto3.client("s3", **self.server.boto3_kwargs())
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        _remove_grpc_sockets(self.ports)

    def stop(self) -> None:
        if self.proc is not None:
            process.stop(self.proc, timeout=5, what="weed mini")
        _remove_grpc_sockets(self.ports)


WSGIDAV_CONFIG = """\
host: 127.0.0.1
port: {port}
server: cheroot
server_args: {{numthreads: 16}}
provider_mapping: {{"/": "{root}"}}
http_authenticator:
  domain_controller: null
  accept_basic: true
  accept_digest: false
  default_to_digest: false
simple_dc:
  user_mapping: {{"*": {{"tester": {{password: "testing"}}}}}}
property_manager: true
lock_storage: true
dir_browser: {{enable: false}}
verbose: 1
logging: {{enable_loggers: []}}
"""


class WsgidavInstance:
    """The wsgidav CLI as a process of its own (fixed port, fixed root), so it can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.root = self.workdir / "dav-root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = process.free_port()
        (self.workdir / "wsgidav.yaml").write_text(WSGIDAV_CONFIG.format(port=self.port, root=self.root))
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0

    def start(self) -> None:
        log = self.workdir / "wsgidav.log"
        exe = Path(sys.executable).parent / "wsgidav"
        self.proc = process.start([exe, f"--config={self.workdir / 'wsgidav.yaml'}"], log_path=log, cwd=self.workdir)
        self.starts += 1
        process.wait_http(self.url + "/", timeout=30, proc=self.proc, log_path=log, ok=(200, 401))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            process.stop(self.proc, timeout=5, what="wsgidav")
