"""Validation against local files: quick (HEAD) and deep (sha256) modes, one report row per lock row."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from packager.lock import build_lock, iter_lock
from packager.stores import StoreRegistry
from packager.validate import REPORT_SCHEMA, validate
from tests.unit import make_items


@pytest.fixture
def locked(tmp_path):
    registry = StoreRegistry()
    lock = tmp_path / "lock.parquet"
    build_lock(make_items(tmp_path, 3), registry, lock, checksum=True)
    return lock, registry, list(iter_lock(lock))


def _report(tmp_path, lock, registry, **kwargs):
    summary = validate(lock, registry, tmp_path / "report.parquet", **kwargs)
    table = pq.read_table(tmp_path / "report.parquet")
    return summary, {(r["item_id"], r["asset_key"]): r for r in table.to_pylist()}, table


def test_clean_lock_is_all_ok(tmp_path, locked):
    lock, registry, rows = locked
    for deep in (False, True):
        summary, report, table = _report(tmp_path, lock, registry, deep=deep)
        assert summary.clean and summary.counts == {"ok": 6, "changed": 0, "missing": 0, "error": 0}
        assert table.num_rows == 6 and table.schema.equals(REPORT_SCHEMA)
        assert all(r["status"] == "ok" and r["mismatches"] == [] for r in report.values())
        checks = {"size", "etag", "last_modified"} | ({"checksum"} if deep else set())
        assert all(set(r["checks"]) == checks for r in report.values())
        assert summary.bytes_read == (sum(r.size for r in rows) if deep else 0)


def test_size_change_missing_and_order(tmp_path, locked):
    lock, registry, rows = locked
    grown, gone = Path(rows[1].location.key), Path(rows[4].location.key)
    grown.write_bytes(grown.read_bytes() + b"x")
    gone.unlink()
    summary, report, table = _report(tmp_path, lock, registry)
    assert table.num_rows == len(rows)  # one report row per lock row, in lock order
    assert [(r["item_id"], r["asset_key"]) for r in table.to_pylist()] == [(r.item_id, r.asset_key) for r in rows]
    changed = report[(rows[1].item_id, rows[1].asset_key)]
    assert changed["status"] == "changed" and "size" in changed["mismatches"]
    assert changed["observed_size"] == rows[1].size + 1 and changed["expected_size"] == rows[1].size
    missing = report[(rows[4].item_id, rows[4].asset_key)]
    assert missing["status"] == "missing" and str(gone) in missing["error"]
    assert summary.counts == {"ok": 4, "changed": 1, "missing": 1, "error": 0} and not summary.clean
    assert summary.drifted == 2 and {f["status"] for f in summary.first_failures} == {"changed", "missing"}
    assert any("size: expected" in f["detail"] for f in summary.first_failures)


def test_same_size_rewrite_with_restored_mtime(tmp_path, locked):
    """Quick mode cannot see it, deep mode can.

    A local file's ETag is obstore's ``<inode>-<mtime>-<size>`` and its last_modified is the mtime: an
    in-place rewrite (same inode) of the same size whose mtime is put back (os.utime) leaves all three
    facts unchanged, so a HEAD-only check passes (stacpkg's validate misses it too). Only re-reading the
    bytes and comparing the sha256 with the lock's checksum catches it.
    """
    lock, registry, rows = locked
    path = Path(rows[2].location.key)
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.write(b"\xff" * 32)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    quick, _, _ = _report(tmp_path, lock, registry)
    assert quick.clean

    deep, report, _ = _report(tmp_path, lock, registry, deep=True)
    assert deep.counts["changed"] == 1 and deep.counts["ok"] == 5
    bad = [r for r in report.values() if r["status"] != "ok"]
    assert [(r["item_id"], r["asset_key"], r["mismatches"]) for r in bad] == [
        (rows[2].item_id, rows[2].asset_key, ["checksum"])]
    assert bad[0]["observed_checksum"] != bad[0]["expected_checksum"] == rows[2].checksum


def test_mtime_change_is_caught_quickly(tmp_path, locked):
    lock, registry, rows = locked
    path = Path(rows[0].location.key)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    summary, report, _ = _report(tmp_path, lock, registry)
    r = report[(rows[0].item_id, rows[0].asset_key)]
    assert r["status"] == "changed" and set(r["mismatches"]) == {"etag", "last_modified"}
    assert summary.counts["changed"] == 1


def test_lock_without_checksums_counts_unverifiable(tmp_path):
    registry = StoreRegistry()
    lock = tmp_path / "lock.parquet"
    build_lock(make_items(tmp_path, 2), registry, lock)
    summary, report, _ = _report(tmp_path, lock, registry, deep=True)
    assert summary.clean and summary.unverifiable_checksums == 4
    assert all("checksum" not in r["checks"] and r["observed_checksum"] for r in report.values())


def test_empty_lock_is_not_clean(tmp_path):
    registry = StoreRegistry()
    build_lock([], registry, tmp_path / "lock.parquet")
    summary, _, table = _report(tmp_path, tmp_path / "lock.parquet", registry)
    assert summary.rows == 0 and table.num_rows == 0 and not summary.clean
