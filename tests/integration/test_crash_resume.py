"""Crash and resume: real processes killed mid-relocation, then run again (issue 9).

* ``test_killed_relocation_resumes_s3``: ``stac-packager relocate`` S3 -> S3 (SeaweedFS) is SIGKILLed three
  times at different points, each time while destination objects exist and multipart uploads are in
  flight. After every kill: no object at a final key is partial or wrong. The next run takes the dead
  run's lease over at once, aborts its incomplete multipart uploads and copies only what is missing; the
  last run completes, leaves no incomplete upload and its lock validates 100 % in deep mode.
* ``test_killed_s3_server_resumes``: the *target server* (our own SeaweedFS process) is SIGKILLed
  mid-relocation and restarted on the same ports and data directory.
* ``test_killed_webdav_server_resumes``: the same with a wsgidav server process: its half-written hidden
  upload temporaries are removed by the next run.
* ``test_killed_relocation_resumes_swift``: a relocation into Swift with small segments is SIGKILLed
  while large objects are being uploaded: the orphaned segments are removed by the next run.

Each test prints one ``CRASH-RESUME`` line with its numbers (runs, kills, retries, objects verified).
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest

from tests.crash_support import (
    LEASE_KEY,
    MiB,
    WeedInstance,
    WsgidavInstance,
    assert_s3_objects_whole,
    by_final_key,
    make_objects_local,
    make_objects_s3,
    payloads,
    s3_final_objects,
    s3_inline,
    s3_uploads,
    start_driver,
    validate_deep,
    wait_until,
    write_package,
)

pytestmark = pytest.mark.integration

N_SMALL, N_LARGE = 72, 8  # 80 objects, 8 of them 5-7 MiB (multipart: the part size is 5 MiB)
#: after a kill, requests the server had already received in full may still complete: let them
SETTLE = 0.5


def _report(name: str, **numbers) -> None:
    print(f"CRASH-RESUME {name}: " + json.dumps(numbers, sort_keys=True))


def _assert_deep_clean(pkg: Path, profiles: list[dict], total: int) -> dict:
    deep = validate_deep(pkg, profiles)
    assert deep["rows"] == total and deep["clean"] and deep["counts"] == {"ok": total}, deep
    return deep


def test_killed_relocation_resumes_s3(tmp_path, s3_endpoint, s3_client, s3_bucket_factory):
    source, dest = s3_bucket_factory(), s3_bucket_factory()
    objects = make_objects_s3(s3_client, source, "src", payloads(N_SMALL, N_LARGE))
    expected = by_final_key(objects)
    total = len(objects)
    pkg = write_package(tmp_path / "pkg", {k: f"s3://{source}/src/{k}" for k in objects}, objects,
                        endpoint=s3_endpoint.endpoint)
    profiles = [s3_inline(source, s3_endpoint), s3_inline(dest, s3_endpoint)]
    target, prefix = f"s3://{dest}/mirror", "mirror"

    kills, seen_uploads, checked_after_kills = [], set(), 0
    for fraction in (0.1, 0.35, 0.6):
        run = start_driver(tmp_path, pkg, target, profiles)
        threshold = int(total * fraction)

        def mid_copy(threshold=threshold, seen=frozenset(seen_uploads)) -> bool:
            # this run's own upload in flight (one of a killed run's is still listed until this run's clean-up)
            return len(s3_final_objects(s3_client, dest, prefix)) >= threshold and bool(
                {u["UploadId"] for u in s3_uploads(s3_client, dest, prefix)} - seen)

        hit = wait_until(mid_copy, timeout=60, proc=run.proc)
        run.kill()  # SIGKILL: no finally, no atexit, no abort of anything in flight
        assert hit and run.proc.returncode == -9, f"the run ended before the kill point\n{run.explain()}"
        time.sleep(SETTLE)
        # nothing partial or wrong at a final key, whatever was in flight
        present = assert_s3_objects_whole(s3_client, dest, prefix, expected)
        checked_after_kills += present
        # (an upload seen just before the kill may still have been completed by a request already sent)
        uploads = {u["UploadId"] for u in s3_uploads(s3_client, dest, prefix)}
        assert not (uploads & seen_uploads), "the previous killed run's uploads were not aborted"
        seen_uploads |= uploads
        lease = s3_client.head_object(Bucket=dest, Key=f"{prefix}/{LEASE_KEY}")  # the dead run's lease is left
        assert lease["ContentLength"] > 0
        kills.append({"objects_at_kill": present, "uploads_in_flight": len(uploads)})

    assert seen_uploads, "no kill left a multipart upload behind"
    present_before = len(s3_final_objects(s3_client, dest, prefix))
    left_uploads = len(s3_uploads(s3_client, dest, prefix))
    # a live upload of some other run under the same prefix (not one of this lock's keys): left alone
    other = s3_client.create_multipart_upload(Bucket=dest, Key=f"{prefix}/partition-x/other.bin")["UploadId"]
    time.sleep(1.0)  # started well before the next run's lease (whole-second server clocks)
    rc, summary = start_driver(tmp_path, pkg, target, profiles).finish()
    assert rc == 0, summary
    assert [u["UploadId"] for u in s3_uploads(s3_client, dest, prefix)] == [other]
    assert summary["cleanup"]["kept_recent"] == 1
    s3_client.abort_multipart_upload(Bucket=dest, Key=f"{prefix}/partition-x/other.bin", UploadId=other)
    # resumed: only what was missing was copied, the rest kept
    assert summary["already_present"] == present_before > 0
    assert summary["copied"] == total - present_before > 0
    assert summary["already_present"] + summary["copied"] == total and summary["failed"] == 0
    assert summary["lease_taken_over"] and "pid" in summary["lease_taken_over"]  # the dead run's, at once
    assert summary["cleanup"]["multipart_uploads_aborted"] == left_uploads
    assert s3_uploads(s3_client, dest, prefix) == []
    assert LEASE_KEY not in s3_final_objects(s3_client, dest, prefix)
    deep = _assert_deep_clean(pkg, profiles, total)
    _report("s3 relocation process SIGKILLed", runs=len(kills) + 1, kills=len(kills), kill_points=kills,
            objects=total, final_run_present=summary["already_present"], final_run_copied=summary["copied"],
            uploads_aborted_by_final_run=summary["cleanup"]["multipart_uploads_aborted"],
            uploads_seen_in_flight=len(seen_uploads), retries=summary["retries"],
            objects_verified_after_kills=checked_after_kills, deep_validated=deep["counts"], lost=0, corrupt=0)


def _local_source(tmp_path: Path, n_small: int, n_large: int):
    objects = make_objects_local(tmp_path / "source", payloads(n_small, n_large, seed=n_small))
    hrefs = {k: f"file://{tmp_path / 'source' / k}" for k in objects}
    return objects, write_package(tmp_path / "pkg", hrefs, objects)


def test_killed_s3_server_resumes(tmp_path):
    """SIGKILL the target S3 server mid-relocation, restart it on the same ports and data: nothing lost."""
    import boto3

    objects, pkg = _local_source(tmp_path, 32, 4)
    expected, total = by_final_key(objects), len(objects)
    weed = WeedInstance(tmp_path / "weed")
    weed.start()
    try:
        client = boto3.client("s3", **weed.server.boto3_kwargs())
        client.create_bucket(Bucket="target")
        profiles = [s3_inline("target", weed.server)]
        target, prefix = "s3://target/mirror", "mirror"
        run = start_driver(tmp_path, pkg, target, profiles)
        hit = wait_until(lambda: len(s3_final_objects(client, "target", prefix)) >= total // 3
                         and bool(s3_uploads(client, "target", prefix)), timeout=60, proc=run.proc)
        assert hit, f"the run ended before the kill point\n{run.explain() if run.proc.poll() is not None else ''}"
        weed.kill()  # the server dies mid-upload
        time.sleep(1.0)
        weed.start()  # same ports, same data directory
        rc_first, first = run.finish(timeout=120)
        assert rc_first in (0, 1), run.explain()  # rows that could not be retried fail cleanly, the rest is kept
        present_before = assert_s3_objects_whole(client, "target", prefix, expected)
        uploads_left = len(s3_uploads(client, "target", prefix))
        rc, summary = start_driver(tmp_path, pkg, target, profiles).finish()
        assert rc == 0, summary
        assert summary["already_present"] == present_before and summary["copied"] == total - present_before
        assert summary["failed"] == 0
        assert s3_uploads(client, "target", prefix) == []
        deep = _assert_deep_clean(pkg, profiles, total)
        _report("s3 target server SIGKILLed and restarted", runs=2, server_kills=1, objects=total,
                first_run={"rc": rc_first, "copied": first and first["copied"], "failed": first and first["failed"],
                           "retries": first and first["retries"]},
                uploads_left_after_first_run=uploads_left,
                uploads_aborted_by_rerun=summary["cleanup"]["multipart_uploads_aborted"],
                rerun_present=summary["already_present"], rerun_copied=summary["copied"],
                retries=summary["retries"],
                deep_validated=deep["counts"], lost=0, corrupt=0)
    finally:
        weed.stop()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # moved into place meanwhile
        return 0


def _dav_state(root: Path, prefix: str) -> tuple[dict[str, int], list[Path]]:
    base = root / prefix
    finals, temps = {}, []
    if base.is_dir():
        for path in base.rglob("*"):
            if not path.is_file():
                continue
            if path.name.startswith(".stacpkg-upload-"):
                temps.append(path)
            elif path.name != LEASE_KEY:
                finals[path.relative_to(base).as_posix()] = path.stat().st_size
    return finals, temps


def _assert_files_whole(root: Path, prefix: str, expected: dict) -> int:
    finals, _ = _dav_state(root, prefix)
    for rel, size in finals.items():
        assert size == expected[rel].size, f"{rel}: partial object at the final key"
        assert hashlib.sha256((root / prefix / rel).read_bytes()).hexdigest() == expected[rel].sha256, rel
    return len(finals)


def test_killed_webdav_server_resumes(tmp_path):
    """SIGKILL the target WebDAV server mid-upload, and the relocation with it while the server is down (a
    node failure): after a restart the re-run copies only what is missing and removes the half-written
    temporaries. The relocation is killed too because a run that outlives the outage deletes its own
    temporaries when the server is back, so whether any were left would depend on timing."""
    objects, pkg = _local_source(tmp_path, 32, 4)
    expected, total = by_final_key(objects), len(objects)
    dav = WsgidavInstance(tmp_path / "dav")
    dav.start()
    try:
        origin = dav.url.split("://", 1)[1]
        profiles = [{"name": "dav", "url": f"webdav://{origin}", "username": "tester", "password": "testing"}]
        target, prefix = f"webdav://{origin}/mirror", "mirror"
        run = start_driver(tmp_path, pkg, target, profiles)

        def mid_upload() -> bool:
            finals, temps = _dav_state(dav.root, prefix)
            return len(finals) >= total // 3 and any(_size(t) > MiB for t in temps)  # a large upload mid-way

        hit = wait_until(mid_upload, timeout=60, proc=run.proc)
        assert hit, f"the run ended before the kill point\n{run.explain() if run.proc.poll() is not None else ''}"
        dav.kill()
        run.kill()  # before the server is back: the half-written temporaries stay behind
        dav.start()
        assert run.proc.returncode == -signal.SIGKILL, run.explain()
        present_before = _assert_files_whole(dav.root, prefix, expected)
        temps_left = len(_dav_state(dav.root, prefix)[1])
        rc, summary = start_driver(tmp_path, pkg, target, profiles).finish()
        assert rc == 0, summary
        assert summary["already_present"] == present_before and summary["copied"] == total - present_before
        assert summary["cleanup"]["temporaries_deleted"] == temps_left >= 1
        assert _dav_state(dav.root, prefix)[1] == []  # no temporaries left
        deep = _assert_deep_clean(pkg, profiles, total)
        _report("webdav target server and relocation SIGKILLed, server restarted", runs=2, server_kills=1,
                process_kills=1, objects=total, temporaries_left_after_first_run=temps_left,
                temporaries_deleted_by_rerun=summary["cleanup"]["temporaries_deleted"],
                rerun_present=summary["already_present"], rerun_copied=summary["copied"],
                retries=summary["retries"],
                deep_validated=deep["counts"], lost=0, corrupt=0)
    finally:
        dav.stop()


def test_killed_relocation_resumes_swift(tmp_path, swift_server, swift_container):
    """SIGKILL a relocation into Swift while large objects are being segmented: orphan segments are removed."""
    objects, pkg = _local_source(tmp_path, 36, 4)
    expected, total = by_final_key(objects), len(objects)
    conn = swift_server.connection()
    profiles = [{"name": "swift", "url": f"swift://{swift_container}", "auth_url": swift_server.auth_url,
                 "user": swift_server.user, "key": swift_server.key, "segment_size_mib": 1}]
    target, prefix = f"swift://{swift_container}/mirror", "mirror/"
    segments = f"{swift_container}_segments"

    def listing(container: str) -> list[dict]:
        try:
            return conn.get_container(container, prefix=prefix, full_listing=True)[1]
        except Exception:  # noqa: BLE001 - the segment container appears with the first large object
            return []

    def finals() -> dict[str, int]:
        return {o["name"][len(prefix):]: o["bytes"] for o in listing(swift_container)
                if not o["name"].endswith(LEASE_KEY)}

    run = start_driver(tmp_path, pkg, target, profiles)
    hit = wait_until(lambda: len(finals()) >= total // 3 and bool(listing(segments)), timeout=60, proc=run.proc,
                     interval=0.05)
    run.kill()
    assert hit and run.proc.returncode == -9, f"the run ended before the kill point\n{run.explain()}"
    time.sleep(SETTLE)
    present = finals()
    for rel in present:  # every object at a final key is whole (an SLO reads as its full concatenation)
        _, body = conn.get_object(swift_container, prefix + rel)
        assert hashlib.sha256(body).hexdigest() == expected[rel].sha256, rel
    segments_after_kill = len(listing(segments))
    rc, summary = start_driver(tmp_path, pkg, target, profiles).finish()
    assert rc == 0, summary
    assert summary["already_present"] == len(present) and summary["copied"] == total - len(present)
    assert summary["cleanup"]["segments_deleted"] >= 1
    # every segment left is referenced by a manifest
    referenced = set()
    for rel in finals():
        headers = conn.head_object(swift_container, prefix + rel)
        if headers.get("x-static-large-object") == "True":
            _, manifest = conn.get_object(swift_container, prefix + rel, query_string="multipart-manifest=get")
            referenced |= {s["name"].split("/", 2)[2] for s in json.loads(manifest)}
    assert {s["name"] for s in listing(segments)} == referenced
    deep = _assert_deep_clean(pkg, profiles, total)
    _report("swift relocation process SIGKILLed", runs=2, kills=1, objects=total, objects_at_kill=len(present),
            segments_after_kill=segments_after_kill, segments_deleted_by_rerun=summary["cleanup"]["segments_deleted"],
            rerun_present=summary["already_present"], rerun_copied=summary["copied"], retries=summary["retries"],
            deep_validated=deep["counts"], lost=0, corrupt=0)
