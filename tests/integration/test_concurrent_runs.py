"""Concurrent runs into one package or target: one wins, the other stops with a clear message (issue 9).

* two ``stac-packager relocate`` CLI processes on the same package and target, started at once;
* two relocations of different packages into the same S3 target at once (the target's lease);
* a lease left by a run on another host: taken over once expired, refused while live, broken on request;
* a run whose lease was broken meanwhile is fenced: it refuses to publish;
* the lease protocol on Swift (If-None-Match + X-Delete-At) and WebDAV (If-None-Match / If-Match).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest

from packager import lease as lease_mod
from packager.lease import LeaseHeld, LeaseInfo, LeaseLost
from packager.locations import parse_href
from packager.profiles import StorageProfile
from packager.publish import package_location, publish
from packager.stores import StoreRegistry
from tests.crash_support import (
    LEASE_KEY,
    by_final_key,
    make_objects_s3,
    payloads,
    s3_env,
    s3_final_objects,
    s3_inline,
    s3_profile,
    start_cli,
    start_driver,
    validate_deep,
    wait_until,
    write_package,
    write_settings,
)

pytestmark = pytest.mark.integration


def _report(name: str, **numbers) -> None:
    print(f"CONCURRENT {name}: " + json.dumps(numbers, sort_keys=True))


@pytest.fixture
def s3_source(tmp_path, s3_endpoint, s3_client, s3_bucket_factory):
    source, dest = s3_bucket_factory(), s3_bucket_factory()
    objects = make_objects_s3(s3_client, source, "src", payloads(20, 4, seed=4))
    hrefs = {k: f"s3://{source}/src/{k}" for k in objects}
    return {"source": source, "dest": dest, "objects": objects, "hrefs": hrefs,
            "profiles": [s3_inline(source, s3_endpoint), s3_inline(dest, s3_endpoint)]}


def test_two_cli_relocations_of_one_package(tmp_path, s3_endpoint, s3_client, s3_source):
    src, dest, objects = s3_source["source"], s3_source["dest"], s3_source["objects"]
    pkg = write_package(tmp_path / "pkg", s3_source["hrefs"], objects, endpoint=s3_endpoint.endpoint)
    config = write_settings(tmp_path / "settings.yaml",
                            [s3_profile("src", src, s3_endpoint), s3_profile("dst", dest, s3_endpoint)])
    args = ["relocate", str(pkg), "--target", f"s3://{dest}/mirror", "--config", str(config), "--json"]
    runs = [start_cli(*args, env=s3_env(s3_endpoint)) for _ in range(2)]
    results = [r.finish(timeout=120) for r in runs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 3], [r.explain() for r in runs]
    winner, loser = (runs[0], runs[1]) if results[0][0] == 0 else (runs[1], runs[0])
    assert "another stac-packager run is writing here" in loser.stderr, loser.explain()
    assert f"pid {winner.proc.pid} on host {socket.gethostname()}" in loser.stderr  # the package's lease
    summary = json.loads(winner.stdout.strip().splitlines()[-1])
    assert summary["copied"] == len(objects) and summary["failed"] == 0
    assert not (pkg / LEASE_KEY).exists()  # released
    deep = validate_deep(pkg, s3_source["profiles"])
    assert deep["clean"] and deep["counts"] == {"ok": len(objects)}
    _report("two CLI runs, one package", runs=2, winners=1, refused=1, objects=len(objects),
            deep_validated=deep["counts"], loser_message=loser.stderr.strip().splitlines()[-1][:240])


def test_two_packages_into_one_target(tmp_path, s3_endpoint, s3_client, s3_source):
    dest, objects, profiles = s3_source["dest"], s3_source["objects"], s3_source["profiles"]
    pkgs = [write_package(tmp_path / f"pkg-{n}", s3_source["hrefs"], objects, endpoint=s3_endpoint.endpoint)
            for n in "ab"]
    target = f"s3://{dest}/shared"
    runs = [start_driver(tmp_path, pkg, target, profiles) for pkg in pkgs]
    results = [r.finish(timeout=120) for r in runs]
    assert sorted(rc for rc, _ in results) == [0, 3], [r.explain() for r in runs]
    won = 0 if results[0][0] == 0 else 1
    loser = runs[1 - won]
    assert f"{target}/{LEASE_KEY}: another stac-packager run is writing here" in loser.stderr, loser.explain()
    assert not (pkgs[1 - won] / "relocated" / "assets.lock.parquet").exists()  # the loser published nothing
    deep = validate_deep(pkgs[won], profiles)
    assert deep["clean"] and deep["counts"] == {"ok": len(objects)}
    # the loser, run again afterwards, finds everything in place and copies nothing
    rc, again = start_driver(tmp_path, pkgs[1 - won], target, profiles).finish()
    assert rc == 0 and again["already_present"] == len(objects) and again["copied"] == 0
    deep_loser = validate_deep(pkgs[1 - won], profiles)
    assert deep_loser["clean"] and deep_loser["counts"] == {"ok": len(objects)}
    assert set(s3_final_objects(s3_client, dest, "shared")) == set(by_final_key(objects))
    _report("two packages, one target", runs=3, winners=1, refused=1, objects=len(objects),
            deep_validated=[deep["counts"], deep_loser["counts"]])


def _plant(s3_client, bucket: str, key: str, *, host: str, expires_in: float, pid: int = 4242) -> None:
    now = time.time()
    info = LeaseInfo(owner=uuid.uuid4().hex, host=host, pid=pid, command="relocate", acquired_at=now - 600,
                     renewed_at=now + expires_in - 120, expires_at=now + expires_in, ttl=120)
    s3_client.put_object(Bucket=bucket, Key=key, Body=info.to_bytes())


def test_stale_live_and_broken_leases(tmp_path, s3_endpoint, s3_client, s3_bucket_factory):
    source, dest = s3_bucket_factory(), s3_bucket_factory()
    objects = make_objects_s3(s3_client, source, "src", payloads(4, 0, seed=2))
    pkg = write_package(tmp_path / "pkg", {k: f"s3://{source}/src/{k}" for k in objects}, objects,
                        endpoint=s3_endpoint.endpoint)
    profiles = [s3_inline(source, s3_endpoint), s3_inline(dest, s3_endpoint)]
    target, lease_key = f"s3://{dest}/t", f"t/{LEASE_KEY}"

    # a run on another machine died 10 minutes ago: its expired lease is taken over
    _plant(s3_client, dest, lease_key, host="other-host", expires_in=-600)
    rc, summary = start_driver(tmp_path, pkg, target, profiles).finish()
    assert rc == 0 and "other-host" in summary["lease_taken_over"] and "expired" in summary["lease_taken_over"]
    assert LEASE_KEY not in s3_final_objects(s3_client, dest, "t")

    # a live run on another machine: refused, with who, since when and what to do
    _plant(s3_client, dest, lease_key, host="other-host", expires_in=100, pid=777)
    run = start_driver(tmp_path, pkg, target, profiles)
    rc, _ = run.finish()
    assert rc == 3
    for words in ("pid 777 on host other-host", "since", "expires", "--break-lease"):
        assert words in run.stderr, run.explain()

    # --break-lease: the operator knows it is dead
    rc, summary = start_driver(tmp_path, pkg, target, profiles, break_lease=True).finish()
    assert rc == 0 and "other-host" in summary["lease_taken_over"] and summary["already_present"] == len(objects)
    deep = validate_deep(pkg, profiles)
    assert deep["clean"]
    _report("stale / live / broken leases", runs=3, taken_over_expired=1, refused_live=1, broken=1)


def test_killed_runs_lease_expires_then_is_taken_over(tmp_path, s3_endpoint, s3_client, s3_source):
    """A real run killed on 'another machine': its lease is refused until it expires, then taken over."""
    dest, objects, profiles = s3_source["dest"], s3_source["objects"], s3_source["profiles"]
    pkg = write_package(tmp_path / "pkg", s3_source["hrefs"], objects, endpoint=s3_endpoint.endpoint)
    target, key = f"s3://{dest}/t", f"t/{LEASE_KEY}"
    ttl = {"STAC_PACKAGER_LEASE_TTL": "6"}
    run = start_driver(tmp_path, pkg, target, profiles, env=ttl)
    assert wait_until(lambda: len(s3_final_objects(s3_client, dest, "t")) >= 2, timeout=60, proc=run.proc)
    run.kill()
    assert run.proc.returncode == -9, run.explain()
    # make it look as if that run had been on another machine (its pid cannot be checked from here)
    info = json.loads(s3_client.get_object(Bucket=dest, Key=key)["Body"].read())
    s3_client.put_object(Bucket=dest, Key=key, Body=json.dumps({**info, "host": "other-host"}).encode())
    refused = start_driver(tmp_path, pkg, target, profiles, env=ttl)
    rc, _ = refused.finish()
    assert rc == 3 and "on host other-host" in refused.stderr and "expires" in refused.stderr, refused.explain()
    expiry = info["expires_at"] + lease_mod.grace_for(info["ttl"])
    time.sleep(max(0.0, expiry - time.time()) + 0.3)
    rc, summary = start_driver(tmp_path, pkg, target, profiles, env=ttl).finish()
    assert rc == 0, summary
    assert "other-host" in summary["lease_taken_over"] and "expired" in summary["lease_taken_over"]
    assert summary["already_present"] >= 2 and summary["already_present"] + summary["copied"] == len(objects)
    deep = validate_deep(pkg, profiles)
    assert deep["clean"] and deep["counts"] == {"ok": len(objects)}
    _report("killed run's lease expires", runs=3, kills=1, refused_before_expiry=1, taken_over_after_expiry=1,
            objects=len(objects), deep_validated=deep["counts"])


def test_lost_lease_stops_publishing(tmp_path, s3_endpoint, s3_bucket):
    registry = StoreRegistry([StorageProfile(**s3_inline(s3_bucket, s3_endpoint))])
    root = package_location(f"s3://{s3_bucket}/pkg", registry)
    first = lease_mod.acquire(root, registry, command="build", ttl=1.5)
    try:
        assert lease_mod.acquire(root, registry, command="build") is first  # re-entrant in one process
        first.release()
        local = tmp_path / "file.bin"
        local.write_bytes(b"x" * 10)
        publish(local, root.child("items.parquet"), registry)  # held: fine
        time.sleep(1.2)
        assert first.renewals >= 1  # renewed every ttl/3 while held
        # another process breaks the lease (simulated here with a second owner)
        thief_info = LeaseInfo(owner=uuid.uuid4().hex, host="elsewhere", pid=1, command="relocate",
                               acquired_at=time.time(), renewed_at=time.time(), expires_at=time.time() + 60, ttl=60)
        thief = lease_mod._acquire_object(lease_mod.lease_location(root), registry, thief_info, True, 0.0)
        try:
            with pytest.raises(LeaseLost, match="lost"):
                publish(local, root.child("assets.lock.parquet"), registry)
            with pytest.raises(LeaseLost):
                first.check()
        finally:
            thief.release()
    finally:
        first.release()


@pytest.mark.parametrize("kind", ["swift", "webdav"])
def test_lease_protocol_on_swift_and_webdav(kind, request, tmp_path):
    if kind == "swift":
        server, container = request.getfixturevalue("swift_server"), request.getfixturevalue("swift_container")
        profile = StorageProfile(name="s", url=f"swift://{container}", auth_url=server.auth_url, user=server.user,
                                 key=server.key)
        prefix = parse_href(f"swift://{container}/pkg")
    else:
        server = request.getfixturevalue("webdav_server")
        profile = StorageProfile(name="d", url=server.href_origin, username=server.user, password=server.password)
        prefix = parse_href(f"{server.href_origin}/lease-{uuid.uuid4().hex[:8]}/pkg")
    registry = StoreRegistry([profile])
    location = lease_mod.lease_location(prefix)

    def contender(**kw) -> LeaseInfo:
        now = time.time()
        return LeaseInfo(owner=uuid.uuid4().hex, host="other-host", pid=os.getpid(), command="relocate",
                         acquired_at=now, renewed_at=now, expires_at=now + kw.get("ttl", 60), ttl=kw.get("ttl", 60))

    held = lease_mod.acquire(prefix, registry, command="relocate", ttl=2)
    with pytest.raises(LeaseHeld, match="another stac-packager run"):
        lease_mod._acquire_object(location, registry, contender(), False, 0.0)
    time.sleep(2.5)  # longer than the ttl: the heartbeat keeps it
    assert held.renewals >= 1
    with pytest.raises(LeaseHeld):
        lease_mod._acquire_object(location, registry, contender(), False, 0.0)
    held.release()
    second = lease_mod._acquire_object(location, registry, contender(ttl=1), False, 0.0)
    # `second` dies without releasing (no heartbeat started): expired after ttl + grace, then taken over
    with pytest.raises(LeaseHeld):
        lease_mod._acquire_object(location, registry, contender(), False, 0.0)
    time.sleep(1 + lease_mod.grace_for(1) + 1.2)
    third = lease_mod._acquire_object(location, registry, contender(), False, 0.0)
    assert third.took_over is None or third.took_over.owner == second.info.owner
    third.release()
    second._loop.close()
