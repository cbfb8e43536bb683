"""Our engine as a small CLI, so benchmarks run it as a subprocess and it pays start-up like the peers.

    python -m bench.ours lock ITEMS.ndjson LOCK.parquet [--checksum] [--concurrency N]
    python -m bench.ours validate LOCK.parquet REPORT.parquet [--deep] [--concurrency N]
    python -m bench.ours relocate LOCK.parquet s3://bucket/prefix OUTDIR [--verify size|checksum]
                                  [--memory-limit-mib M] [--chunk-mib C] [--concurrency N] [--put-concurrency P]
    python -m bench.ours search API_URL ITEMS.parquet [--collections C] [--limit L]

S3 settings come from the environment (never argv): ``BENCH_S3_ENDPOINT``, ``BENCH_S3_ACCESS_KEY_ID``,
``BENCH_S3_SECRET_ACCESS_KEY``, ``BENCH_S3_BUCKETS`` (comma-separated; one storage profile per bucket).
Prints one JSON summary line on stdout; exits 1 when a row failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _registry():
    from packager.profiles import StorageProfile
    from packager.stores import StoreRegistry

    profiles = []
    endpoint = os.environ.get("BENCH_S3_ENDPOINT")
    if endpoint:
        for bucket in filter(None, os.environ.get("BENCH_S3_BUCKETS", "").split(",")):
            profiles.append(StorageProfile(
                name=f"bench-{bucket}", url=f"s3://{bucket}", endpoint=endpoint, region="us-east-1",
                access_key_id=os.environ["BENCH_S3_ACCESS_KEY_ID"],
                secret_access_key=os.environ["BENCH_S3_SECRET_ACCESS_KEY"]))
    return StoreRegistry(profiles)


def _items(path: Path):
    import orjson

    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def cmd_lock(a) -> int:
    from packager.lock import build_lock

    s = build_lock(_items(a.items), _registry(), a.out, checksum=a.checksum, concurrency=a.concurrency)
    print(json.dumps({"rows": s.rows, "failures": len(s.failures), "bytes": s.bytes, "seconds": s.seconds,
                      "first_failure": s.failures[0].error if s.failures else None}))
    return 1 if s.failures else 0


def cmd_validate(a) -> int:
    from packager.validate import validate

    s = validate(a.lock, _registry(), a.report, deep=a.deep, concurrency=a.concurrency)
    print(json.dumps({"rows": s.rows, "counts": s.counts, "seconds": s.seconds,
                      "first_failures": s.first_failures[:2]}))
    return 0 if s.clean else 1


def cmd_relocate(a) -> int:
    from packager.locations import parse_href
    from packager.relocate import MiB, RelocationSettings, relocate

    registry = _registry()
    target = registry.with_endpoint(parse_href(a.target))
    settings = RelocationSettings(concurrency=a.concurrency, memory_limit=a.memory_limit_mib * MiB,
                                  chunk_size=a.chunk_mib * MiB, put_concurrency=a.put_concurrency, verify=a.verify)
    a.outdir.mkdir(parents=True, exist_ok=True)
    s = relocate(a.lock, target, registry, a.outdir / "assets.lock.parquet", a.outdir / "failures.parquet", settings)
    print(json.dumps({"rows": s.rows, "copied": s.copied, "present": s.present, "server_side": s.server_side,
                      "bytes_copied": s.bytes_copied, "failures": len(s.failures), "seconds": s.seconds,
                      "peak_reserved_bytes": s.peak_reserved_bytes,
                      "first_failure": s.failures[0].error if s.failures else None}))
    return 1 if s.failures else 0


def cmd_search(a) -> int:
    from packager.items import ndjson_to_geoparquet
    from packager.search import SearchRequest, search_to_ndjson

    t0 = time.perf_counter()
    ndjson = a.out.with_suffix(".ndjson")
    request = SearchRequest(collections=a.collections.split(",") if a.collections else None, limit=a.limit)
    s = search_to_ndjson(a.api, request, ndjson)
    searched = time.perf_counter() - t0
    i = ndjson_to_geoparquet(ndjson, a.out)
    print(json.dumps({"returned": s.returned, "pages": s.pages, "items": i.items, "search_seconds": searched,
                      "seconds": time.perf_counter() - t0, "parquet_bytes": i.bytes}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ours", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lk = sub.add_parser("lock")
    lk.add_argument("items", type=Path)
    lk.add_argument("out", type=Path)
    lk.add_argument("--checksum", action="store_true")
    lk.add_argument("--concurrency", type=int, default=32)
    va = sub.add_parser("validate")
    va.add_argument("lock", type=Path)
    va.add_argument("report", type=Path)
    va.add_argument("--deep", action="store_true")
    va.add_argument("--concurrency", type=int, default=32)
    re_ = sub.add_parser("relocate")
    re_.add_argument("lock", type=Path)
    re_.add_argument("target")
    re_.add_argument("outdir", type=Path)
    re_.add_argument("--verify", choices=("size", "checksum"), default="checksum")
    re_.add_argument("--memory-limit-mib", type=int, default=256)
    re_.add_argument("--chunk-mib", type=int, default=8)
    re_.add_argument("--concurrency", type=int, default=16)
    re_.add_argument("--put-concurrency", type=int, default=4)
    se = sub.add_parser("search")
    se.add_argument("api")
    se.add_argument("out", type=Path)
    se.add_argument("--collections")
    se.add_argument("--limit", type=int, default=1000)
    a = p.parse_args(argv)
    return {"lock": cmd_lock, "validate": cmd_validate, "relocate": cmd_relocate, "search": cmd_search}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
