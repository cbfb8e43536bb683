"""Issue 9, flaky stores: lock, relocation and deep validation through a fault-injecting proxy.

For S3 (SeaweedFS), Swift and WebDAV, and for each fault kind (connection resets, 500/503 answers, slow
answers, bodies cut short) and a mix of them, at a few percent of requests, the engine's lock build,
relocation and deep validation run through :class:`devservers.faultproxy.FaultProxy`. Every run must
complete through retries, and what landed on the server (read directly, not through the proxy) must be
sha256-equal to the source: nothing lost, nothing corrupt, nothing partial at a final key.

Retries are counted at three levels, reported separately (``pytest -s`` prints one line per run, the
session summary one per fault kind; ``FAULT_STATS_JSON=path`` writes them as JSON):

* ``row``: the engine's row retries (a whole row tried again: ``LockSummary`` / ``RelocationSummary`` /
  ``ValidationSummary.retries``, what the Dagster assets put in their metadata);
* ``client``: requests the store clients sent again on their own and counted (Swift: swiftclient's retries
  and resumed downloads; WebDAV: replayed requests, resumed downloads, recovered MOVEs) -
  :meth:`StoreRegistry.request_retries`. obstore (S3) retries inside Rust and does not say how often;
* ``wire``: what the proxy saw: requests repeating a request that had a fault injected and failed. It
  includes obstore's retries, so for S3 it is the only witness of them.
"""

from __future__ import annotations

import hashlib
import random
import re
import time

import pyarrow.parquet as pq
import pytest

from packager.locations import parse_href
from packager.lock import build_lock
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry
from packager.validate import validate
from tests.fixtures_faults import record_fault_run

pytestmark = pytest.mark.integration

MiB = 1 << 20
COLLECTION = "flaky"
#: fault kind -> the proxy's rates for it ("a few percent of requests")
FAULTS = {
    "reset": {"reset": 0.04},
    "status": {"status": 0.04},
    "slow": {"slow": 0.04},
    "truncate": {"truncate": 0.05},
    "mixed": {"reset": 0.015, "status": 0.015, "slow": 0.015, "truncate": 0.015},
}
#: per-request client timeout of the profiles. Generous: on a loaded 2-core machine a server in the test
#: process can take several seconds to answer a streamed multi-MiB upload
TIMEOUT = "10s"
#: slow answers are late by 0.1-1.5 s: within the timeout, they test that latency (a stalled body half way, a
#: late answer to a write) costs time, never bytes
SLOW_DELAY = (0.1, 1.5)
SMALL_OBJECTS = 38
#: above the 5 MiB relocation chunk: S3 multipart uploads, Swift static large objects (2 MiB segments)
LARGE_SIZES = (5 * MiB + 12345, 7 * MiB + 1)


def objects(seed: int, small: int = SMALL_OBJECTS, large: tuple[int, ...] = LARGE_SIZES
            ) -> dict[tuple[str, str], tuple[str, bytes]]:
    """(item id, asset key) -> (source key, bytes): small objects of varied sizes (one empty), a few large."""
    rng = random.Random(seed)
    sizes = [0, 1] + [rng.choice((rng.randint(2, 4096), rng.randint(4097, 300_000))) for _ in
                      range(small - 2)] + list(large)
    out = {}
    for n, size in enumerate(sizes):
        item, asset = f"item-{n // 4:02d}", f"a{n % 4}"
        out[(item, asset)] = (f"src/{item}/{asset}.bin", rng.randbytes(size))
    return out


def items_for(source: str, objs: dict) -> list[dict]:
    items: dict[str, dict] = {}
    for (item_id, asset), (key, _) in objs.items():
        n = int(item_id.split("-")[1])
        item = items.setdefault(item_id, {
            "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": COLLECTION,
            "geometry": {"type": "Point", "coordinates": [11.0 + n / 100, 46.0]},
            "bbox": [11.0 + n / 100, 46.0, 11.0 + n / 100, 46.0],
            "properties": {"datetime": f"2024-06-{1 + n % 28:02d}T10:00:00Z"}, "links": [], "assets": {}})
        item["assets"][asset] = {"href": f"{source}/{key}", "type": "application/octet-stream"}
    return list(items.values())


def sha(data: bytes) -> str:
    return "1220" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["s3", "swift", "webdav"])
def flaky(request):
    return request.getfixturevalue(f"flaky_{request.param}")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_lock_relocate_validate_through_faults(flaky, fault, tmp_path):
    seed = sum(map(ord, f"{flaky.name}/{fault}"))
    objs = objects(seed)
    flaky.seed_many(dict(objs.values()))
    for proxy in flaky.proxies:
        proxy.slow_delay = SLOW_DELAY
        proxy.reseed(seed)  # reproducible decisions per (backend, fault kind)
    registry = StoreRegistry(flaky.profiles(TIMEOUT))
    flaky.set_faults(**FAULTS[fault])
    started = time.perf_counter()

    lock = build_lock(items_for(flaky.source, objs), registry, tmp_path / "lock.parquet", checksum=True,
                      concurrency=16)
    assert lock.failures == [], [f.error for f in lock.failures[:5]]
    assert (lock.rows, lock.checksums) == (len(objs), len(objs))

    lock_done = time.perf_counter()
    target = parse_href(flaky.target)
    reloc = relocate(tmp_path / "lock.parquet", target, registry, tmp_path / "relocated.parquet",
                     tmp_path / "failures.parquet",
                     RelocationSettings(concurrency=8, chunk_size=5 * MiB, put_concurrency=2, memory_limit=64 * MiB))
    if reloc.failures:
        pytest.fail("relocation failed:\n" + "\n".join(f.error for f in reloc.failures[:5]) + "\n" + flaky.explain(
            [re.split(r":\s", f.error, maxsplit=1)[0] for f in reloc.failures[:5]]), pytrace=False)
    assert (reloc.rows, reloc.copied) == (len(objs), len(objs))

    reloc_done = time.perf_counter()
    report = validate(tmp_path / "relocated.parquet", registry, tmp_path / "report.parquet", deep=True,
                      concurrency=16)
    if report.counts["ok"] != len(objs):
        pytest.fail(f"deep validation: {report.counts}\n{report.first_failures}\n"
                    + flaky.explain([f["href"] for f in report.first_failures]), pytrace=False)
    seconds = time.perf_counter() - started
    flaky.set_faults()

    # -- what really landed: read straight from the server, not through the proxy ------------------------
    landed = flaky.target_objects()
    relocated = pq.read_table(tmp_path / "relocated.parquet").to_pylist()
    prefix = target.key.strip("/") + "/"
    expected = {rec["key"].lstrip("/")[len(prefix):]: objs[(rec["item_id"], rec["asset_key"])][1]
                for rec in relocated}
    assert len(expected) == len(objs)
    lost = sorted(set(expected) - set(landed))
    corrupt = sorted(k for k in expected if k in landed and landed[k] != expected[k])
    extra = sorted(k for k in set(landed) - set(expected) if not k.endswith(".stac-packager.lease"))
    for rec in relocated:  # the new lock's checksums are the source's
        assert rec["checksum"] == sha(objs[(rec["item_id"], rec["asset_key"])][1])
    stats = flaky.stats()
    record = {
        "backend": flaky.name, "fault": fault, "rates": FAULTS[fault], "objects": len(objs),
        "bytes": sum(len(d) for _, d in objs.values()), "requests": stats["requests"],
        "injected": stats["injected"], "variants": stats["variants"],
        "row_retries": lock.retries + reloc.retries + report.retries,
        "row_retries_by_job": {"lock": lock.retries, "relocate": reloc.retries, "validate": report.retries},
        "client_retries": registry.request_retries(), "wire_retries": stats["retried"],
        "objects_verified": len(expected) - len(lost) - len(corrupt), "lost": len(lost), "corrupt": len(corrupt),
        "extra": extra, "garbage": flaky.garbage(), "verified_by": dict(reloc.verified),
        "seconds": round(seconds, 2), "seconds_by_job": {
            "lock": round(lock_done - started, 2), "relocate": round(reloc_done - lock_done, 2),
            "validate": round(started + seconds - reloc_done, 2)},
    }
    record_fault_run(record)
    print(f"\n[flaky] {flaky.name:6s} {fault:8s} objects={len(objs)} requests={stats['requests']} "
          f"injected={stats['injected']} row_retries={record['row_retries_by_job']} "
          f"client_retries={record['client_retries']} wire_retries={record['wire_retries']} "
          f"verified={record['objects_verified']} lost={len(lost)} corrupt={len(corrupt)} "
          f"garbage={len(record['garbage'])} {seconds:.1f}s {record['seconds_by_job']}")

    assert lost == [] and corrupt == [], (lost, corrupt)
    assert extra == [], f"objects at the target that no lock row names: {extra}"
    assert flaky.errors() == []  # the proxy itself never failed
    injected = sum(stats["injected"].get(k, 0) for k in FAULTS[fault])
    assert injected > 0, f"no {fault} fault was injected in {stats['requests']} requests"
    if fault != "slow":  # every reset, error answer or cut body fails a request, which someone retried
        assert stats["retried"] > 0
        if flaky.name != "s3":  # obstore's own retries are invisible; swiftclient's and ours are counted
            assert record["row_retries"] + record["client_retries"] > 0


def test_dagster_chain_through_flaky_stores_puts_retries_in_metadata(flaky_s3, flaky_webdav, tmp_path, monkeypatch):
    """items -> lock (S3 source through a proxy) -> relocation onto WebDAV (through another) -> deep validation,
    as Dagster materializes it. The first two uploads to the WebDAV target are reset (a streamed PUT body
    cannot be replayed, so each costs the relocation a row retry), other faults come at random: the retries
    must show in the relocation asset's metadata, and every object land whole."""
    import json

    import dagster as dg

    from packager.package import LAYOUT
    from pipelines.assets import build_chain
    from pipelines.settings import Settings, build_resources
    from tests.chain_support import materialized

    objs = objects(7, small=22, large=(5 * MiB + 777,))
    flaky_s3.seed_many(dict(objs.values()))
    package = tmp_path / "pkg"
    (package / LAYOUT.search_items).parent.mkdir(parents=True)
    (package / LAYOUT.search_items).write_text(
        "".join(json.dumps(item) + "\n" for item in items_for(flaky_s3.source, objs)))
    server, dav = flaky_s3.extra["server"], flaky_webdav.extra["server"]
    monkeypatch.setenv("FLAKY_S3_KEY", server.access_key_id)
    monkeypatch.setenv("FLAKY_S3_SECRET", server.secret_access_key)
    monkeypatch.setenv("FLAKY_DAV_PASSWORD", dav.password)
    profiles = [{"name": p.name, "url": p.url, "endpoint": p.endpoint, "region": p.region, "timeout": TIMEOUT,
                 "access_key_id": {"env": "FLAKY_S3_KEY"}, "secret_access_key": {"env": "FLAKY_S3_SECRET"}}
                for p in flaky_s3.profiles(TIMEOUT)]
    profiles += [{"name": p.name, "url": p.url, "username": p.username, "timeout": TIMEOUT,
                  "password": {"env": "FLAKY_DAV_PASSWORD"}} for p in flaky_webdav.profiles(TIMEOUT)]
    settings = Settings.model_validate({
        "package": {"url": str(package), "checksum": True, "workdir": str(tmp_path / "work")},
        "relocation": {"target": flaky_webdav.target, "memory_limit_mib": 64, "chunk_size_mib": 5,
                       "put_concurrency": 2, "concurrency": 8},
        "validation": {"deep": True},
        "retries": {"max_retries": 0},  # the engine's retries must do it, not a Dagster re-run of the step
        "storage": {"profiles": profiles},
    })
    rates = {"reset": 0.015, "status": 0.015, "truncate": 0.015}
    for flaky in (flaky_s3, flaky_webdav):
        flaky.set_faults(**rates)
    dav_target = flaky_webdav.proxies[1]
    dav_target.force("reset", count=2, method="PUT", path=r"\.stacpkg-upload-", variant="request")

    started = time.perf_counter()
    result = dg.materialize(build_chain(settings)[1:], resources=build_resources(settings),
                            instance=dg.DagsterInstance.ephemeral())
    seconds = time.perf_counter() - started
    for flaky in (flaky_s3, flaky_webdav):
        flaky.set_faults()
    assert result.success

    lock, relocated, report = (materialized(result, name) for name in ("assets_lock", "relocated_assets",
                                                                        "validation_report"))
    assert (lock["rows"], lock["checksums"]) == (len(objs), len(objs))
    assert (relocated["copied"], relocated["failed"]) == (len(objs), 0)
    assert (report["ok"], report["deep"]) == (len(objs), True)
    # every upload the proxy broke (a reset or an error answer to a streamed PUT) cost one row retry, and
    # the relocation's materialization says so
    broken_puts = [e for e in dav_target.events if e.method == "PUT" and "stacpkg-upload-" in e.path
                   and e.kind in ("reset", "status")]
    assert len(broken_puts) >= 2
    assert relocated["retries"] >= len(broken_puts)

    landed = flaky_webdav.target_objects()
    expected = {f"{COLLECTION}/{item}/{asset}.bin": data for (item, asset), (_, data) in objs.items()}
    assert landed == expected
    s3_stats, dav_stats = flaky_s3.stats(), flaky_webdav.stats()
    injected = {k: s3_stats["injected"].get(k, 0) + dav_stats["injected"].get(k, 0) for k in ("reset", "status",
                                                                                               "truncate")}
    record_fault_run({
        "backend": "dagster s3->webdav", "fault": "dagster-chain", "rates": rates, "objects": len(objs),
        "bytes": sum(len(d) for _, d in objs.values()), "requests": s3_stats["requests"] + dav_stats["requests"],
        "injected": injected, "variants": {**s3_stats["variants"], **dav_stats["variants"]},
        "row_retries": lock["retries"] + relocated["retries"] + report["retries"],
        "row_retries_by_job": {"lock": lock["retries"], "relocate": relocated["retries"],
                               "validate": report["retries"]},
        "client_retries": 0,  # the Dagster resources build their own registries: not reachable from here
        "wire_retries": s3_stats["retried"] + dav_stats["retried"],
        "objects_verified": len(landed), "lost": len(set(expected) - set(landed)),
        "corrupt": sum(landed.get(k) not in (None, v) for k, v in expected.items()), "extra": [],
        "garbage": flaky_webdav.garbage(),
        "verified_by": relocated["verified"], "seconds": round(seconds, 2),
    })
    print(f"\n[flaky] dagster s3->webdav injected={injected} metadata retries: lock={lock['retries']} "
          f"relocated={relocated['retries']} validation={report['retries']} wire_retries="
          f"{s3_stats['retried'] + dav_stats['retried']} verified={len(landed)} {seconds:.1f}s")


LEASE_REQUESTS = r"\.stac-packager\.lease"
MULTIPART_LISTING = r"[?&]uploads(=|&|$)"


def test_lease_and_clean_up_requests_survive_faults(flaky, tmp_path):
    """The relocation lease and the clean-up's multipart listing are faulted on purpose: the create of the
    lease loses its answer after the server made the object (the retry meets our own lease and must not
    take it over as someone else's), its first read gets a 503, and the S3 listing of incomplete multipart
    uploads is reset. The run completes, copies everything and releases its lease."""
    seed = sum(map(ord, f"{flaky.name}/lease"))
    objs = objects(seed, small=6, large=(LARGE_SIZES[0],))
    flaky.seed_many(dict(objs.values()))
    registry = StoreRegistry(flaky.profiles(TIMEOUT))
    lock = build_lock(items_for(flaky.source, objs), registry, tmp_path / "lock.parquet", checksum=True)
    assert lock.failures == []
    for proxy in flaky.proxies:
        proxy.reset_counters()
        proxy.force("reset", method="PUT", path=LEASE_REQUESTS, variant="response")
        proxy.force("status", method="GET", path=LEASE_REQUESTS, variant="before")
        proxy.force("reset", method="GET", path=MULTIPART_LISTING, variant="request")

    reloc = relocate(tmp_path / "lock.parquet", parse_href(flaky.target), registry, tmp_path / "relocated.parquet",
                     tmp_path / "failures.parquet",
                     RelocationSettings(concurrency=4, chunk_size=5 * MiB, put_concurrency=2, memory_limit=64 * MiB))

    assert [f.error for f in reloc.failures] == []
    assert (reloc.rows, reloc.copied) == (len(objs), len(objs))
    faulted = [e for proxy in flaky.proxies for e in proxy.events]
    assert any(e.method == "PUT" and re.search(LEASE_REQUESTS, e.path) for e in faulted), faulted
    if flaky.name == "s3":
        assert any(re.search(MULTIPART_LISTING, e.path) for e in faulted), faulted
    landed = flaky.target_objects()
    assert not [key for key in landed if key.endswith(".stac-packager.lease")], "the lease was not released"
    assert len(landed) == len(objs)
    assert flaky.errors() == []
