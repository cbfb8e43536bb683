"""Relocation across backends through the engine: lock -> relocate -> deep validation, on real servers.

Every ordered pair of S3, Swift, WebDAV and local, and a plain HTTP origin -> S3: each copy is checked
byte for byte and a second run copies nothing. One test streams a 300 MiB object S3 -> Swift (a static large object) in a
subprocess with a 64 MiB memory limit and bounds the child's peak RSS.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler
from itertools import permutations
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from devservers.process import serve_http
from packager.locations import Location, parse_href
from packager.lock import build_lock
from packager.profiles import StorageProfile
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry
from packager.validate import validate

pytestmark = pytest.mark.integration

MiB = 1 << 20
#: sizes of the assets of every source: empty, small, one S3 part, more than one Swift segment
SIZES = {"empty": 0, "small": 1500, "medium": 300_000, "large": 9 * MiB}
SETTINGS = RelocationSettings(concurrency=4, memory_limit=64 * MiB, chunk_size=5 * MiB, put_concurrency=2)


def pattern(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 4096  # 128 KiB
    return (block * (size // len(block) + 1))[:size]


async def chunks_of(data: bytes, size: int = 1 * MiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


class _QuietFiles(SimpleHTTPRequestHandler):
    """A plain HTTP origin (no ETag, no Range): the weakest source a STAC catalogue can point at."""

    def log_message(self, *args) -> None:
        pass


@dataclass
class World:
    """One registry serving an S3 bucket, a Swift container, a WebDAV prefix, a local directory and a
    plain HTTP origin (read-only: its objects are files in ``http_root``)."""

    registry: StoreRegistry
    roots: dict[str, Location]
    http_root: Path

    def location(self, kind: str, key: str) -> Location:
        return self.roots[kind].child(key)


@pytest.fixture
def world(s3_endpoint, s3_bucket, swift_server, swift_container, webdav_server, tmp_path) -> Iterator[World]:
    container = swift_container
    profiles = [
        StorageProfile(name="s3", url=f"s3://{s3_bucket}", endpoint=s3_endpoint.endpoint, region=s3_endpoint.region,
                       access_key_id=s3_endpoint.access_key_id, secret_access_key=s3_endpoint.secret_access_key),
        StorageProfile(name="swift", url=f"swift://{container}", auth_url=swift_server.auth_url,
                       user=swift_server.user, key=swift_server.key, segment_size_mib=4),
        StorageProfile(name="dav", url=webdav_server.href_origin, username=webdav_server.user,
                       password=webdav_server.password),
    ]
    dav_prefix = f"x-{uuid.uuid4().hex[:8]}"
    http_root = tmp_path / "http"
    http_root.mkdir()
    with serve_http(partial(_QuietFiles, directory=str(http_root))) as http_origin:
        roots = {"s3": parse_href(f"s3://{s3_bucket}/root", endpoint=s3_endpoint.endpoint),
                 "swift": parse_href(f"swift://{container}/root"),
                 "webdav": parse_href(f"{webdav_server.href_origin}/{dav_prefix}"),
                 "local": parse_href((tmp_path / "local").as_uri()),
                 "http": parse_href(f"{http_origin}/root")}
        yield World(StoreRegistry(profiles), roots, http_root)


def _seed_sources(world: World, kind: str, tag: str) -> tuple[list[dict], dict[str, bytes]]:
    """Objects on the source backend and the STAC items that point at them."""
    store = world.registry.store_for(world.roots[kind])
    expected: dict[str, bytes] = {}
    items = []

    async def put_all():
        for name, size in SIZES.items():
            location = world.location(kind, f"src-{tag}/{name}.bin")
            data = pattern(size, f"{tag}-{name}")
            if kind == "http":
                path = world.http_root / location.key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            elif size > 2 * MiB:
                await store.put_stream(location.key, chunks_of(data), chunk_size=5 * MiB, max_concurrency=2)
            else:
                await store.put_bytes(location.key, data)
            expected[name] = data
            items.append({"type": "Feature", "stac_version": "1.0.0", "id": f"item-{name}", "collection": "coll",
                          "geometry": None, "properties": {}, "links": [],
                          "assets": {"data": {"href": location.href(), "type": "application/octet-stream"}}})

    asyncio.run(put_all())
    return items, expected


def _read(world: World, location: Location) -> bytes:
    store = world.registry.store_for(location)

    async def main():
        return b"".join([c async for c in store.stream(location.key, MiB)])

    return asyncio.run(main())


@pytest.mark.parametrize(("source", "target"), [*permutations(["s3", "swift", "webdav", "local"], 2), ("http", "s3")])
def test_relocate_across_backends(world: World, tmp_path: Path, source: str, target: str) -> None:
    tag = f"{source}-{target}"
    items, expected = _seed_sources(world, source, tag)
    lock = tmp_path / "assets.lock.parquet"
    summary = build_lock(items, world.registry, lock, checksum=True)
    assert not summary.failures, summary.failures
    assert summary.rows == len(SIZES)

    destination = world.location(target, f"relocated-{tag}")
    out_lock, failures = tmp_path / "relocated.parquet", tmp_path / "failures.parquet"
    first = relocate(lock, destination, world.registry, out_lock, failures, SETTINGS)
    assert not first.failures, [f.error for f in first.failures]
    assert (first.copied, first.present, first.bytes_copied) == (len(SIZES), 0, sum(SIZES.values()))

    rows = pq.read_table(out_lock).to_pylist()
    assert {r["store_type"] for r in rows} == {destination.kind}
    source_checksums = {r["item_id"]: r["checksum"] for r in pq.read_table(lock).to_pylist()}
    for row in rows:
        name = row["item_id"].removeprefix("item-")
        copy = parse_href(row["href"])
        assert copy.href().startswith(destination.href() + "/")
        assert _read(world, copy) == expected[name], f"{row['href']} differs from its source"
        assert row["size_bytes"] == len(expected[name])
        assert row["checksum"] == source_checksums[row["item_id"]] == \
            "1220" + hashlib.sha256(expected[name]).hexdigest()

    report = validate(out_lock, world.registry, tmp_path / "report.parquet", deep=True)
    assert report.clean, report.first_failures
    assert report.bytes_read == sum(SIZES.values())

    again = relocate(lock, destination, world.registry, tmp_path / "again.parquet", tmp_path / "f2.parquet",
                     SETTINGS)
    assert not again.failures
    assert (again.copied, again.present, again.bytes_copied) == (0, len(SIZES), 0)
    assert pq.read_table(tmp_path / "again.parquet").to_pylist() == rows  # the earlier lock stays valid


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from packager.lock import build_lock
    from packager.locations import parse_href
    from packager.profiles import StorageProfile
    from packager.relocate import RelocationSettings, relocate
    from packager.stores import StoreRegistry

    cfg = json.loads(sys.argv[1])
    profiles = [StorageProfile(**p) for p in cfg["profiles"]]
    registry = StoreRegistry(profiles)
    work = Path(cfg["work"])
    items = [{"id": "big", "collection": "c", "links": [], "properties": {}, "geometry": None,
              "assets": {"data": {"href": cfg["source"]}}}]
    summary = build_lock(items, registry, work / "lock.parquet", checksum=False)
    assert not summary.failures, summary.failures
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    baseline = rss()
    started = time.perf_counter()
    result = relocate(work / "lock.parquet", parse_href(cfg["target"]), registry, work / "out.parquet",
                      work / "failures.parquet",
                      RelocationSettings(memory_limit=64 << 20, chunk_size=8 << 20, put_concurrency=4))
    seconds = time.perf_counter() - started
    import pyarrow.parquet as pq
    rows = pq.read_table(work / "out.parquet").to_pylist()
    hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print(json.dumps({"baseline": baseline, "peak": rss(), "vmhwm": hwm, "seconds": seconds,
                      "failures": [f.error for f in result.failures], "copied": result.copied,
                      "peak_reserved": result.peak_reserved_bytes, "rows": rows}))
""")


def test_300mib_s3_to_swift_streams_in_bounded_memory(s3_endpoint, s3_bucket, swift_server, tmp_path) -> None:
    size = 300 * MiB
    memory_limit = 64 * MiB
    container = f"big-{uuid.uuid4().hex[:10]}"
    conn = swift_server.connection()
    conn.put_container(container)
    s3_profile = {"name": "s3", "url": f"s3://{s3_bucket}", "endpoint": s3_endpoint.endpoint,
                  "region": s3_endpoint.region, "access_key_id": s3_endpoint.access_key_id,
                  "secret_access_key": s3_endpoint.secret_access_key}
    swift_profile = {"name": "swift", "url": f"swift://{container}", "auth_url": swift_server.auth_url,
                     "user": swift_server.user, "key": swift_server.key, "segment_size_mib": 100}
    source = parse_href(f"s3://{s3_bucket}/big/source.bin", endpoint=s3_endpoint.endpoint)
    digest = hashlib.sha256()
    block = hashlib.sha256(b"big").digest() * (MiB // 32)  # 1 MiB

    async def generate() -> AsyncIterator[bytes]:
        for i in range(size // MiB):
            chunk = i.to_bytes(4, "big") + block[4:]
            digest.update(chunk)
            yield chunk

    store = StoreRegistry([StorageProfile(**s3_profile)]).store_for(source)
    started = time.perf_counter()
    asyncio.run(store.put_stream(source.key, generate(), chunk_size=8 * MiB, max_concurrency=4))
    uploaded = time.perf_counter() - started

    config = {"profiles": [s3_profile, swift_profile], "work": str(tmp_path), "source": source.href(),
              "target": f"swift://{container}/relocated"}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    try:
        # Linux keeps ru_maxrss across exec, so a child forked (or vforked) straight from this big pytest
        # process would report pytest's RSS: let a small shell fork it instead ('; exit' keeps sh from exec'ing).
        child = subprocess.run(["/bin/sh", "-c", '"$0" "$@"; exit $?', sys.executable, "-c", CHILD,
                                json.dumps(config)], capture_output=True, text=True, timeout=300, env=env)
        assert child.returncode == 0, child.stderr[-3000:]
        result = json.loads(child.stdout.strip().splitlines()[-1])
        grown = result["peak"] - result["baseline"]
        print(f"\n300 MiB S3 -> Swift: baseline RSS {result['baseline'] / MiB:.0f} MiB, peak {result['peak'] / MiB:.0f} "
              f"MiB, growth {grown / MiB:.0f} MiB (bound {(memory_limit + 150 * MiB) / MiB:.0f} MiB), "
              f"(VmHWM {result['vmhwm'] / MiB:.0f} MiB), peak reserved {result['peak_reserved'] / MiB:.0f} MiB, "
              f"relocation {result['seconds']:.1f} s (source upload {uploaded:.1f} s, child "
              f"{time.perf_counter() - started - uploaded:.1f} s)")
        assert not result["failures"], result["failures"]
        assert result["copied"] == 1
        assert grown < memory_limit + 150 * MiB
        row = result["rows"][0]
        assert row["size_bytes"] == size
        assert row["checksum"] == "1220" + digest.hexdigest()
        headers = conn.head_object(container, "relocated/c/big/data.bin")
        assert int(headers["content-length"]) == size
        assert headers.get("x-static-large-object") == "True"
        assert len(conn.get_container(f"{container}_segments")[1]) == 3
    finally:
        for name in (container, f"{container}_segments"):
            try:
                for obj in conn.get_container(name, full_listing=True)[1]:
                    conn.delete_object(name, obj["name"])
                conn.delete_container(name)
            except Exception:  # noqa: S110
                pass
