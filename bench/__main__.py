"""Benchmarks of our engine against the peers, side by side in one run, on loopback servers started here.

    python -m bench [--quick] [--only lock,validate100k,relocate,rss,search] [--runs N] [--keep]

See bench/README.md. Every tool runs as a subprocess (ours through ``python -m bench.ours``), so each pays
its process start-up; wall time is measured around the whole command (or pipeline) and peak RSS is each
process's own, from ``/usr/bin/time -f %M`` (a pipeline reports its largest process).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
PY = sys.executable
STACPKG = Path(os.environ.get("STACPKG_VENV") or REPO / ".cache" / "stacpkg-venv") / "bin" / "stacpkg"
TOOLS = REPO / ".cache" / "bench-venv" / "bin"
S5CMD = TOOLS / "s5cmd"
RCLONE = shutil.which("rclone") or "/usr/bin/rclone"
TIME = "/usr/bin/time"  # GNU time (Debian package "time"): %M = peak RSS in KiB
SHUTDOWN_CRASH_RCS = {134, 139, -6, -11}  # stacpkg defect 1: crash at exit after complete output
MiB = 1 << 20
SCENARIOS = ("lock", "validate100k", "relocate", "rss", "search")


# -- running and measuring ----------------------------------------------------------------------
@dataclass
class Measured:
    seconds: float
    rss_mib: float
    rcs: list[int]
    stderr: str
    stdout: str = ""


def run(cmds: list[list[str]], *, env: dict | None = None, stdin: Path | None = None, stdout: Path | None = None,
        timeout: float = 1200, cwd: Path = REPO) -> Measured:
    """Run a pipeline ``cmds[0] | cmds[1] | ...``; wall time of the whole, the largest process's peak RSS."""
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115 - closed below
    fout = open(stdout, "wb") if stdout else subprocess.PIPE  # noqa: SIM115
    errs, procs = [], []
    t0 = time.perf_counter()
    prev = fin
    rss_files = []
    for i, cmd in enumerate(cmds):
        last = i == len(cmds) - 1
        err = tempfile.TemporaryFile()  # noqa: SIM115
        # Peak RSS from GNU time, not from our own wait4: a forked child's ru_maxrss starts at the parent's
        # RSS (this process holds upload buffers), so wait4 over-reports small tools.
        rss_file = tempfile.NamedTemporaryFile(prefix="bench-rss-", delete=False)  # noqa: SIM115
        rss_file.close()
        rss_files.append(rss_file.name)
        p = subprocess.Popen([TIME, "-f", "%M", "-o", rss_file.name, *[str(c) for c in cmd]], stdin=prev, stdout=fout if last else subprocess.PIPE,
                             stderr=err, env=env, cwd=cwd)
        if i > 0:
            prev.close()  # the parent's copy of the pipe: the reader sees EOF when the writer exits
        prev = p.stdout
        procs.append(p)
        errs.append(err)
    timer = threading.Timer(timeout, lambda: [p.kill() for p in procs if p.returncode is None])
    timer.start()
    out = b""
    if fout is subprocess.PIPE:
        out = procs[-1].stdout.read()
    rss, rcs = 0.0, []
    for p, rss_path in zip(procs, rss_files, strict=True):
        rcs.append(p.wait())
        lines = [x for x in Path(rss_path).read_text().split() if x.isdigit()]
        Path(rss_path).unlink()
        rss = max(rss, int(lines[-1]) / 1024 if lines else float("nan"))  # KiB
    seconds = time.perf_counter() - t0
    timer.cancel()
    stderr = ""
    for e in errs:
        e.seek(0)
        stderr += e.read().decode(errors="replace")[-3000:]
        e.close()
    for f in (fin, fout):
        if f not in (subprocess.DEVNULL, subprocess.PIPE):
            f.close()
    return Measured(seconds, rss, rcs, stderr, out.decode(errors="replace"))


class BenchError(RuntimeError):
    pass


def must(m: Measured, what: str, ok_rcs=frozenset({0})) -> Measured:
    if any(rc not in ok_rcs for rc in m.rcs):
        raise BenchError(f"{what}: exit codes {m.rcs}\n{m.stderr[-2000:]}\n{m.stdout[-1000:]}")
    return m


def ours(*args) -> list[str]:
    return [PY, "-m", "bench.ours", *map(str, args)]


def stacpkg(*args) -> list[str]:
    return [str(STACPKG), *map(str, args)]


@dataclass
class Case:
    scenario: str
    case: str
    tool: str
    runs: list[dict] = field(default_factory=list)
    units: int = 0          # rows / objects
    bytes: int = 0
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(r["seconds"] for r in self.runs) if self.runs else float("nan")

    @property
    def rss_mib(self) -> float:
        return statistics.median(r["rss_mib"] for r in self.runs) if self.runs else float("nan")

    def summary(self) -> dict:
        s = self.seconds
        return {**{k: v for k, v in asdict(self).items()}, "median_seconds": round(s, 3),
                "median_rss_mib": round(self.rss_mib, 1),
                "objects_per_s": round(self.units / s, 1) if self.units else None,
                "mib_per_s": round(self.bytes / MiB / s, 1) if self.bytes else None}


class Bench:
    def __init__(self, runs: int, scale: float, work: Path) -> None:
        self.runs, self.scale, self.work = runs, scale, work
        self.cases: dict[tuple[str, str, str], Case] = {}
        self.targets: list[dict] = []
        self.errors: list[str] = []

    def n(self, count: int) -> int:
        return max(1, int(count * self.scale))

    def record(self, scenario, case, tool, m: Measured, *, units=0, nbytes=0, note="", extra=None) -> None:
        c = self.cases.setdefault((scenario, case, tool), Case(scenario, case, tool, units=units, bytes=nbytes,
                                                               note=note))
        c.runs.append({"seconds": round(m.seconds, 3), "rss_mib": round(m.rss_mib, 1), "rcs": m.rcs,
                       **(extra or {})})
        print(f"  {scenario:12s} {case:24s} {tool:22s} {m.seconds:8.2f} s {m.rss_mib:7.1f} MiB rc={m.rcs}",
              flush=True)

    def get(self, scenario, case, tool) -> Case | None:
        c = self.cases.get((scenario, case, tool))
        return c if c and c.runs else None

    def target(self, name: str, value: float | None, op: str, limit: float, unit: str = "") -> None:
        ok = value is not None and (value >= limit if op == ">=" else value <= limit)
        self.targets.append({"target": name, "value": None if value is None else round(value, 2), "op": op,
                             "limit": limit, "unit": unit, "status": "PASS" if ok else "MISS"})


# -- data ---------------------------------------------------------------------------------------
def small_objects(root: Path, n_items: int) -> dict[tuple[str, str], Path]:
    """n_items x 3 random objects of 1-16 KiB (deterministic sizes), as in stacpkg's gen.py."""
    rnd = random.Random(42)
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n_items):
        for key in ("data", "aux", "thumb"):
            p = root / f"item-{i:05d}-{key}.bin"
            p.write_bytes(os.urandom(rnd.randint(1024, 16384)))
            files[(f"item-{i:05d}", key)] = p
    return files


def write_items(path: Path, assets: dict[tuple[str, str], str], collection: str = "bench") -> int:
    by_item: dict[str, dict] = {}
    for (iid, key), href in assets.items():
        by_item.setdefault(iid, {})[key] = {"href": href, "type": "application/octet-stream", "roles": ["data"]}
    with open(path, "w") as out:
        for i, (iid, a) in enumerate(by_item.items()):
            x, y = 10 + (i % 100) * 0.01, 45 + (i // 100 % 100) * 0.01
            out.write(json.dumps({
                "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [], "id": iid,
                "collection": collection,
                "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + .01, y], [x + .01, y + .01],
                                                                 [x, y + .01], [x, y]]]},
                "bbox": [x, y, x + .01, y + .01],
                "properties": {"datetime": "2025-06-01T00:00:00Z", "platform": "synthetic"},
                "links": [], "assets": a}) + "\n")
    return len(by_item)


class S3:
    """One SeaweedFS for the whole run; buckets per measured run, deleted afterwards to free the disk."""

    def __init__(self, server, stack: ExitStack) -> None:
        self.server = server
        import boto3
        from botocore.config import Config

        self.client = boto3.client("s3", **server.boto3_kwargs(),
                                   config=Config(max_pool_connections=64, retries={"max_attempts": 5}))

    def env_ours(self, buckets: list[str]) -> dict:
        return {**os.environ, "PYTHONPATH": str(REPO), "BENCH_S3_ENDPOINT": self.server.endpoint,
                "BENCH_S3_ACCESS_KEY_ID": self.server.access_key_id,
                "BENCH_S3_SECRET_ACCESS_KEY": self.server.secret_access_key, "BENCH_S3_BUCKETS": ",".join(buckets)}

    def env_stacpkg(self, bucket: str) -> dict:
        suffix = "".join(ch if ch.isalnum() else "_" for ch in bucket.upper())
        return {**os.environ, "STACPKG_OBSTORE_ALLOW_HTTP": "true",
                f"STACPKG_S3_ACCESS_KEY_ID_{suffix}": self.server.access_key_id,
                f"STACPKG_S3_SECRET_ACCESS_KEY_{suffix}": self.server.secret_access_key,
                f"STACPKG_S3_REGION_{suffix}": self.server.region,
                f"STACPKG_S3_ENDPOINT_{suffix}": self.server.endpoint}

    def env_s5cmd(self) -> dict:
        return {**os.environ, "AWS_ACCESS_KEY_ID": self.server.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.server.secret_access_key, "AWS_REGION": self.server.region}

    def env_rclone(self, conf: Path) -> dict:
        # rclone 1.60's S3 SDK fails on AWS_CA_BUNDLE with its own transport (LoadCustomCABundleError);
        # loopback http needs no CA bundle
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env["RCLONE_CONFIG"] = str(conf)
        for remote in ("SRC", "DST"):  # two remotes: rclone streams between them (no server-side copy)
            env.update({f"RCLONE_CONFIG_{remote}_TYPE": "s3", f"RCLONE_CONFIG_{remote}_PROVIDER": "SeaweedFS",
                        f"RCLONE_CONFIG_{remote}_ENV_AUTH": "false",
                        f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID": self.server.access_key_id,
                        f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY": self.server.secret_access_key,
                        f"RCLONE_CONFIG_{remote}_ENDPOINT": self.server.endpoint,
                        f"RCLONE_CONFIG_{remote}_REGION": self.server.region})
        return env

    def mb(self, bucket: str) -> None:
        self.client.create_bucket(Bucket=bucket)

    def count(self, bucket: str, prefix: str = "") -> tuple[int, int]:
        n = size = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                n += 1
                size += o["Size"]
        return n, size

    def rb(self, bucket: str) -> None:
        """Empty and delete a bucket (SeaweedFS drops the bucket's collection: its disk space comes back)."""
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
        self.client.delete_bucket(Bucket=bucket)

    def upload(self, bucket: str, objects: list[tuple[str, object]], concurrency: int = 32) -> None:
        """objects: (key, bytes | Path | int size of fresh random bytes)."""
        from obstore import put_async
        from obstore.store import S3Store

        store = S3Store(bucket, **self.server.obstore_kwargs())

        async def main():
            sem = asyncio.Semaphore(concurrency)

            async def one(key, body):
                async with sem:
                    if isinstance(body, Path):
                        body = body.read_bytes()
                    elif isinstance(body, int):
                        body = os.urandom(body)
                    await put_async(store, key, body, chunk_size=16 * MiB, max_concurrency=4)

            await asyncio.gather(*(one(k, b) for k, b in objects))

        asyncio.run(main())


# -- scenario 1: lock build and validate vs stacpkg ---------------------------------------------
def lock_scenario(b: Bench, stack: ExitStack, get_s3) -> None:
    from devservers import process

    n_items = b.n(2000)
    root = b.work / "lock"
    files = small_objects(root / "objects", n_items)
    rows = len(files)
    total = sum(p.stat().st_size for p in files.values())
    modes = {}
    # HTTP: python -m http.server on 127.0.0.1 serving the object files
    port = process.free_port()
    http = process.start([PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory", root / "objects",
                          str(port)], log_path=root / "http.log")
    stack.callback(process.stop, http, what="http.server")
    process.wait_http(f"http://127.0.0.1:{port}/", proc=http, timeout=30)
    write_items(root / "items-http.ndjson", {k: f"http://127.0.0.1:{port}/{p.name}" for k, p in files.items()})
    modes["http"] = ({**os.environ, "PYTHONPATH": str(REPO)}, {**os.environ, "STACPKG_OBSTORE_ALLOW_HTTP": "true"})
    # S3: the same objects in a SeaweedFS bucket
    s3 = get_s3()
    s3.mb("bench-lock")
    s3.upload("bench-lock", [(f"small/{p.name}", p) for p in files.values()], concurrency=64)
    write_items(root / "items-s3.ndjson", {k: f"s3://bench-lock/small/{p.name}" for k, p in files.items()})
    modes["s3"] = (s3.env_ours(["bench-lock"]), s3.env_stacpkg("bench-lock"))

    import pyarrow as pa
    import pyarrow.ipc

    for mode, (env_ours, env_pkg) in modes.items():
        d = root / f"run-{mode}"
        d.mkdir()
        items = root / f"items-{mode}.ndjson"
        note = f"{n_items} items x 3 assets, {rows} objects of 1-16 KiB over {mode}; HEAD only (no checksum)"
        pkg_lock = d / "stacpkg.lock.parquet"
        for r in range(b.runs):
            # stacpkg: items from-ndjson | asset-lock derive (probes = HEAD per row, 4 workers)
            out = d / f"stacpkg-{r}.arrow"
            m = run([stacpkg("items", "from-ndjson", items), stacpkg("asset-lock", "derive")], env=env_pkg, stdout=out)
            got = pa.ipc.open_stream(out.read_bytes()).read_all().num_rows if out.stat().st_size else 0
            if got != rows:
                raise BenchError(f"stacpkg derive ({mode}) emitted {got}/{rows} rows, rc {m.rcs}\n{m.stderr[-1500:]}")
            must(m, "stacpkg derive", ok_rcs={0} | SHUTDOWN_CRASH_RCS)
            b.record("lock", f"build/{mode}", "stacpkg 0.1.4", m, units=rows, nbytes=total, note=note)
            if r == 0:
                for _ in range(3):  # to-parquet may hit the exit crash; the file is checked, not the rc
                    run([stacpkg("asset-lock", "to-parquet", pkg_lock)], env=env_pkg, stdin=out)
                    if pkg_lock.exists():
                        break
            out.unlink()
            # ours: python -m bench.ours lock
            ours_lock = d / "ours.lock.parquet"
            m = must(run([ours("lock", items, ours_lock)], env=env_ours), f"ours lock ({mode})")
            b.record("lock", f"build/{mode}", "ours", m, units=rows, nbytes=total, note=note)
            # stacpkg: asset-lock from-parquet | asset-lock validate (JSONL)
            out = d / f"stacpkg-{r}.jsonl"
            m = run([stacpkg("asset-lock", "from-parquet", pkg_lock), stacpkg("asset-lock", "validate")],
                    env=env_pkg, stdout=out)
            report = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
            valid = sum(1 for x in report if x.get("valid"))
            if valid != rows:
                raise BenchError(f"stacpkg validate ({mode}): {valid}/{rows} valid, rc {m.rcs}\n{m.stderr[-1500:]}")
            b.record("lock", f"validate/{mode}", "stacpkg 0.1.4", m, units=rows, note=note)
            # ours: python -m bench.ours validate (quick: HEAD and compare)
            m = must(run([ours("validate", ours_lock, d / "report.parquet")], env=env_ours), f"ours validate ({mode})")
            b.record("lock", f"validate/{mode}", "ours", m, units=rows, note=note)
    for case in ("build/http", "validate/http", "build/s3", "validate/s3"):
        o, p = b.get("lock", case, "ours"), b.get("lock", case, "stacpkg 0.1.4")
        b.target(f"lock {case}: stacpkg time / ours time", p.seconds / o.seconds if o and p else None, ">=", 5.0, "x")
    shutil.rmtree(root / "objects", ignore_errors=True)


# -- scenario 1b: a 100,000-row lock validate ---------------------------------------------------
def validate100k_scenario(b: Bench, stack: ExitStack, get_s3) -> None:
    n = b.n(100_000)
    root = b.work / "v100k"
    objects = root / "objects"
    rnd = random.Random(7)
    assets = {}
    for i in range(n):
        sub = objects / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        p = sub / f"o-{i:06d}.bin"
        p.write_bytes(rnd.randbytes(rnd.randint(64, 1024)))
        assets[(f"item-{i:06d}", "data")] = "file://" + str(p)
    write_items(root / "items.ndjson", assets)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    lock = root / "lock.parquet"
    m = must(run([ours("lock", root / "items.ndjson", lock)], env=env), "ours lock 100k")
    b.record("validate100k", "build (setup)", "ours", m, units=n, note=f"{n} local files of 64-1024 B")
    pkg_env = {**os.environ, "STACPKG_OBSTORE_ALLOW_HTTP": "true"}
    for _run in range(b.runs):
        m = must(run([ours("validate", lock, root / "report.parquet")], env=env), "ours validate 100k")
        b.record("validate100k", "validate/file", "ours", m, units=n, note=f"{n}-row lock, local files")
        out = root / "stacpkg.jsonl"
        m = run([stacpkg("asset-lock", "from-parquet", lock), stacpkg("asset-lock", "validate")],
                env=pkg_env, stdout=out)
        with open(out) as fh:
            valid = sum(1 for line in fh if '"valid": true' in line)
        if valid != n:
            b.errors.append(f"stacpkg validate 100k: {valid}/{n} valid (rc {m.rcs})")
        b.record("validate100k", "validate/file", "stacpkg 0.1.4", m, units=n,
                 note=f"{n}-row lock (ours), local files; stacpkg {valid}/{n} valid")
        out.unlink()
    c = b.get("validate100k", "validate/file", "ours")
    b.target("100k-row validate wall time", c.seconds, "<=", 5.0, "s")
    b.target("100k-row validate peak RSS", c.rss_mib, "<=", 200.0, "MiB")
    shutil.rmtree(objects, ignore_errors=True)


# -- scenarios 2 and 3: relocation S3 -> S3 vs rclone and s5cmd; peak RSS at a 64 MiB limit -------
def relocate_scenario(b: Bench, stack: ExitStack, get_s3, with_tools: bool, with_rss: bool) -> None:
    s3 = get_s3()
    root = b.work / "relocate"
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "rclone.conf"
    conf.write_text("")
    sets = {"large": (b.n(8), 256 * MiB), "small": (b.n(2000), 1 * MiB)}
    if not with_tools:
        sets = {"large": sets["large"]}
    s3.mb("bench-src")
    for name, (count, size) in sets.items():
        t0 = time.perf_counter()
        keys = [f"{name}/obj-{i:05d}.bin" for i in range(count)]
        s3.upload("bench-src", [(k, size) for k in keys], concurrency=2 if name == "large" else 32)
        write_items(root / f"items-{name}.ndjson", {(f"item-{i:05d}", "data"): f"s3://bench-src/{k}"
                                                    for i, k in enumerate(keys)})
        must(run([ours("lock", root / f"items-{name}.ndjson", root / f"{name}.lock.parquet")],
                 env=s3.env_ours(["bench-src"])), f"ours lock of {name}")
        print(f"  uploaded and locked {count} x {size // MiB} MiB in {time.perf_counter() - t0:.1f} s", flush=True)
    seq = 0

    def measure(name, tool, cmd_of, env_of, *, note=""):
        nonlocal seq
        count, size = sets[name]
        seq += 1
        bucket = f"bench-dst-{seq:03d}"
        s3.mb(bucket)
        try:
            m = run([cmd_of(bucket)], env=env_of(bucket))
            got, nbytes = s3.count(bucket)
            if got != count or nbytes != count * size or any(m.rcs):
                raise BenchError(f"{tool} {name}: {got}/{count} objects, {nbytes} B, rc {m.rcs}\n{m.stderr[-1500:]}"
                                 f"\n{m.stdout[-800:]}")
            extra = {}
            if m.stdout.strip().startswith("{"):
                extra = {"engine": json.loads(m.stdout.strip().splitlines()[-1])}
            b.record("relocate" if tool != "ours (64 MiB limit)" else "rss", name, tool, m, units=count,
                     nbytes=count * size, note=note, extra=extra)
        finally:
            s3.rb(bucket)

    ours_cmd = {
        "ours verify=size": lambda name: lambda bucket: ours("relocate", root / f"{name}.lock.parquet",
                                                             f"s3://{bucket}/{name}", root / f"out-{bucket}",
                                                             "--verify", "size"),
        "ours verify=checksum": lambda name: lambda bucket: ours("relocate", root / f"{name}.lock.parquet",
                                                                 f"s3://{bucket}/{name}", root / f"out-{bucket}"),
    }
    for _run in range(b.runs):
        for name in sets:
            if with_tools:
                for tool, mk in ours_cmd.items():
                    measure(name, tool, mk(name), lambda bucket: s3.env_ours(["bench-src", bucket]),
                            note="defaults: concurrency 16, memory 256 MiB, 8 MiB parts, 4 parts in flight")
                measure(name, "rclone", lambda bucket, name=name: [
                    RCLONE, "copy", f"src:bench-src/{name}", f"dst:{bucket}/{name}", "--transfers", "16",
                    "--checkers", "16", "--s3-no-check-bucket"], lambda bucket: s3.env_rclone(conf),
                    note="two remotes: streamed through rclone; --transfers 16; verifies size and MD5")
                measure(name, "s5cmd", lambda bucket, name=name: [
                    S5CMD, "--endpoint-url", s3.server.endpoint, "cp", f"s3://bench-src/{name}/*",
                    f"s3://{bucket}/{name}/"], lambda bucket: s3.env_s5cmd(),
                    note="same endpoint: server-side CopyObject (s5cmd has no streamed S3->S3 mode)")
            if with_rss and name == "large":
                measure("large", "ours (64 MiB limit)", lambda bucket: ours(
                    "relocate", root / "large.lock.parquet", f"s3://{bucket}/large", root / f"out-{bucket}",
                    "--memory-limit-mib", "64"), lambda bucket: s3.env_ours(["bench-src", bucket]),
                    note="verify=checksum, memory_limit 64 MiB, 8 MiB parts, 4 parts in flight")
    if with_tools:
        for variant in ours_cmd:
            o = b.get("relocate", "large", variant)
            for peer, need in (("rclone", 1.0), ("s5cmd", 0.9)):
                p = b.get("relocate", "large", peer)
                b.target(f"large objects bytes/s, {variant} / {peer}", p.seconds / o.seconds if o and p else None,
                         ">=", need, "x")
            o, p = b.get("relocate", "small", variant), b.get("relocate", "small", "rclone")
            b.target(f"small objects objects/s, {variant} / rclone", p.seconds / o.seconds if o and p else None,
                     ">=", 1.0, "x")
    if with_rss:
        c = b.get("rss", "large", "ours (64 MiB limit)")
        b.target("peak RSS relocating large objects, 64 MiB limit", c.rss_mib if c else None, "<=", 64 + 100, "MiB")
    s3.rb("bench-src")
    shutil.rmtree(root, ignore_errors=True)


# -- scenario 4: search to items.parquet --------------------------------------------------------
def search_scenario(b: Bench, stack: ExitStack, get_s3) -> None:
    from devservers.rustac import find_rustac, rustac_api
    from devservers.stacdata import (
        SYNTH_COLLECTION,
        collections_for,
        synthetic_items,
        template_item,
        write_ndjson,
    )

    n = b.n(10_000)
    root = b.work / "search"
    root.mkdir(parents=True)
    items = root / "items.ndjson"
    write_ndjson(items, synthetic_items(template_item(), n))
    (root / "collection.json").write_text(json.dumps(collections_for([items])[0]))
    t0 = time.perf_counter()
    url = stack.enter_context(rustac_api([root / "collection.json", items], workdir=root, start_timeout=300))
    print(f"  rustac serve loaded {n} items in {time.perf_counter() - t0:.1f} s", flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    import pyarrow.parquet as pq

    for r in range(b.runs):
        out = root / f"ours-{r}.parquet"
        m = must(run([ours("search", url, out, "--collections", SYNTH_COLLECTION, "--limit", "1000")], env=env),
                 "ours search")
        got = pq.ParquetFile(out).metadata.num_rows
        if got != n:
            raise BenchError(f"ours search: {got}/{n} items")
        b.record("search", "items.parquet", "ours", m, units=n, note="pystac-client pages of 1000 -> ndjson -> "
                 "STAC GeoParquet (stac-geoparquet conformant)", extra={"engine": json.loads(m.stdout)})
        out = root / f"rustac-{r}.parquet"
        m = must(run([[find_rustac(), "search", url, out, "--collections", SYNTH_COLLECTION, "--limit", "1000",
                       "-n", str(n)]]), "rustac search")
        got = pq.ParquetFile(out).metadata.num_rows
        if got != n:
            raise BenchError(f"rustac search: {got}/{n} items")
        b.record("search", "items.parquet", "rustac 0.9.18 search", m, units=n, note="rustac CLI (Rust), pages of 1000")
    shutil.rmtree(root, ignore_errors=True)


# -- report -------------------------------------------------------------------------------------
def table(b: Bench) -> str:
    lines = ["| scenario | case | tool | median s | peak RSS MiB | throughput | ours is |",
             "|---|---|---|---:|---:|---:|---|"]
    for (scenario, case, tool), c in b.cases.items():
        if not c.runs:
            continue
        thr = ""
        if c.bytes and scenario in ("relocate", "rss"):
            thr = f"{c.bytes / MiB / c.seconds:,.0f} MiB/s, {c.units / c.seconds:,.1f} obj/s"
        elif c.units:
            thr = f"{c.units / c.seconds:,.0f} rows/s"
        rel = ""
        if not tool.startswith("ours"):
            for (s2, c2, t2), o in b.cases.items():
                if s2 == scenario and c2 == case and t2.startswith("ours") and o.runs:
                    rel += f"{c.seconds / o.seconds:.2f}x faster ({t2}); "
        lines.append(f"| {scenario} | {case} | {tool} | {c.seconds:.2f} | {c.rss_mib:.0f} | {thr} | {rel.strip('; ')} |")
    lines += ["", "| target | measured | need | result |", "|---|---:|---:|---|"]
    for t in b.targets:
        v = "n/a" if t["value"] is None else f"{t['value']}{' ' + t['unit'] if t['unit'] != 'x' else 'x'}"
        lines.append(f"| {t['target']} | {v} | {t['op']} {t['limit']}{t['unit'] if t['unit'] == 'x' else ' ' + t['unit']}"
                     f" | **{t['status']}** |")
    return "\n".join(lines)


def tool_versions() -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - informational only
            return f"unavailable ({exc})"

    import obstore

    return {"rclone": first([RCLONE, "version"]), "s5cmd": first([S5CMD, "version"]),
            "stacpkg": first([str(STACPKG.parent / "pip"), "show", "stacpkg"]).replace("Name: ", "") + " 0.1.4",
            "obstore (ours)": obstore.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one run per case instead of three")
    p.add_argument("--runs", type=int, help="runs per case (default 3, 1 with --quick)")
    p.add_argument("--only", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    p.add_argument("--scale", type=float, default=1.0, help="scale every data set (debugging; default 1)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (bench/work/<timestamp>)")
    a = p.parse_args(argv)
    only = set(a.only.split(",")) if a.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    for exe, hint in ((STACPKG, "bash scripts/stacpkg-venv.sh"), (S5CMD, "bash bench/setup.sh"),
                      (Path(RCLONE), "bash bench/setup.sh")):
        if not Path(exe).exists():
            p.error(f"{exe} is missing: run {hint}")
    runs = a.runs or (1 if a.quick else 3)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = BENCH / "work" / stamp
    work.mkdir(parents=True)
    b = Bench(runs, a.scale, work)
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    with ExitStack() as stack:
        s3_holder = []

        def get_s3() -> S3:
            if not s3_holder:
                from devservers.seaweedfs import seaweedfs

                s3_holder.append(S3(stack.enter_context(seaweedfs(work / "seaweedfs")), stack))
            return s3_holder[0]

        plan = [("lock", lock_scenario), ("validate100k", validate100k_scenario)]
        for name, fn in plan:
            if name in only:
                print(f"== {name}", flush=True)
                try:
                    fn(b, stack, get_s3)
                except Exception as exc:  # keep going: the other scenarios still report
                    b.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    print(f"!! {name} failed: {exc}", flush=True)
        if only & {"relocate", "rss"}:
            print("== relocate / rss", flush=True)
            try:
                relocate_scenario(b, stack, get_s3, "relocate" in only, "rss" in only)
            except Exception as exc:
                b.errors.append(f"relocate: {type(exc).__name__}: {exc}")
                print(f"!! relocate failed: {exc}", flush=True)
        if "search" in only:
            print("== search", flush=True)
            try:
                search_scenario(b, stack, get_s3)
            except Exception as exc:
                b.errors.append(f"search: {type(exc).__name__}: {exc}")
                print(f"!! search failed: {exc}", flush=True)
    elapsed = time.perf_counter() - started
    text = table(b)
    print("\n" + text)
    if b.errors:
        print("\nerrors:\n- " + "\n- ".join(e[:1500] for e in b.errors))
    doc = {"started_utc": stamp, "seconds": round(elapsed, 1), "runs": runs, "scale": a.scale,
           "scenarios": sorted(only), "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "versions": tool_versions(),
           "cases": [c.summary() for c in b.cases.values()], "targets": b.targets, "errors": b.errors,
           "table_markdown": text}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(doc, indent=2))
    shutil.copyfile(out, RESULTS / "latest.json")
    print(f"\nwrote {out.relative_to(REPO)} and bench/results/latest.json in {elapsed:.0f} s")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
        if not any((BENCH / "work").iterdir()):
            (BENCH / "work").rmdir()
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
