"""Leases on local folders (a kernel flock) and the local clean-up of staging files, with real processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager import lease as lease_mod
from packager.cleanup import _parse_uploads, cleanup_incomplete
from packager.lease import LEASE_NAME, LeaseHeld, LeaseInfo
from packager.locations import parse_href
from packager.publish import package_location, publish
from packager.stores import StoreRegistry

REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from packager.lease import acquire
from packager.publish import package_location
from packager.stores import StoreRegistry
reg = StoreRegistry()
lease = acquire(package_location(sys.argv[1], reg), reg, command="holder")
print("held", flush=True)
time.sleep(60)
"""


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_local_lease_refuses_a_second_holder_and_frees_on_kill(tmp_path):
    registry = StoreRegistry()
    root = package_location(str(tmp_path / "pkg"), registry)
    holder = _holder(tmp_path / "pkg")
    try:
        with pytest.raises(LeaseHeld) as refused:
            lease_mod.acquire(root, registry, command="second")
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and "(holder)" in message and "when that process ends" in message
        os.kill(holder.pid, signal.SIGKILL)  # the kernel drops a dead process's flock at once
        holder.wait(10)
        with lease_mod.hold(root, registry, command="second") as held:
            assert held is not None and (tmp_path / "pkg" / LEASE_NAME).exists()
            publish(Path(__file__), root.child("copy.py"), registry)  # fenced publish under a held lease: fine
        assert not (tmp_path / "pkg" / LEASE_NAME).exists()  # released: removed
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_lease_is_reentrant_and_off_switch(tmp_path, monkeypatch):
    registry = StoreRegistry()
    root = package_location(str(tmp_path), registry)
    with lease_mod.hold(root, registry, command="a") as outer, lease_mod.hold(root, registry, command="b") as inner:
        assert outer is inner
    assert lease_mod.held_leases() == []
    monkeypatch.setenv("STAC_PACKAGER_LEASES", "off")
    assert lease_mod.acquire(root, registry, command="a") is None


def test_dead_here_tells_dead_and_reused_pids():
    now = time.time()
    me = LeaseInfo(owner="x", host=os.uname().nodename, pid=os.getpid(), command="c", acquired_at=now,
                   renewed_at=now, expires_at=now + 60, ttl=60, pid_start=lease_mod._proc_start(os.getpid()))
    assert not me.dead_here()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    gone = LeaseInfo(**{**me.__dict__, "pid": proc.pid})
    assert gone.dead_here()
    reused = LeaseInfo(**{**me.__dict__, "pid_start": "1"})  # same pid, another start time
    assert reused.dead_here()
    elsewhere = LeaseInfo(**{**me.__dict__, "host": "some-other-host", "pid": proc.pid})
    assert not elsewhere.dead_here()  # another machine's pid says nothing here


def test_local_cleanup_removes_old_staging_files_only(tmp_path):
    (tmp_path / "a").mkdir()
    old, new, keep = tmp_path / "a" / "obj.bin#1", tmp_path / "a" / "obj.bin#2", tmp_path / "a" / "obj.bin"
    for path in (old, new, keep):
        path.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    summary = asyncio.run(cleanup_incomplete(None, parse_href(f"file://{tmp_path}"), cutoff))
    assert summary.temporaries_deleted == 1 and summary.kept_recent == 1
    assert not old.exists() and new.exists() and keep.exists()


def test_list_multipart_uploads_parser_pages():
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><IsTruncated>true</IsTruncated>
  <NextKeyMarker>k2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
  <Upload><Key>k1</Key><UploadId>u1</UploadId><Initiated>2024-05-01T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>k2</Key><UploadId>u2</UploadId><Initiated>2024-05-01T10:00:01Z</Initiated></Upload>
</ListMultipartUploadsResult>"""
    uploads, following = _parse_uploads(body)
    assert [u[:2] for u in uploads] == [("k1", "u1"), ("k2", "u2")]
    assert uploads[0][2] == dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)
    assert following == {"key-marker": "k2", "upload-id-marker": "u2"}
