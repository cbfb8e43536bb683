"""Relocation local -> local: verified copies, resumable re-runs, per-row failures, bounded memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from packager.errors import ConfigError, TemplateError
from packager.locations import parse_href
from packager.lock import build_lock, iter_lock
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry
from packager.validate import validate
from tests.unit import make_item, make_items, write_object

MiB = 1 << 20
SETTINGS = RelocationSettings(concurrency=8, chunk_size=5 * MiB, memory_limit=64 * MiB, put_concurrency=2)


def sha(path) -> str:
    return "1220" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def pkg(tmp_path):
    """A lock of 4 items x 2 assets under tmp_path/src, and a relocate() bound to tmp_path/dest."""
    items = make_items(tmp_path, 4)
    registry = StoreRegistry()
    lock = tmp_path / "lock.parquet"
    summary = build_lock(items, registry, lock)
    assert summary.failures == [] and summary.rows == 8

    class Pkg:
        root = tmp_path
        dest = tmp_path / "dest"

        def __init__(self):
            self.lock, self.registry, self.items = lock, registry, items

        def run(self, name="out", settings=SETTINGS, lock_path=None, **kwargs):
            out, failures = tmp_path / f"{name}.parquet", tmp_path / f"{name}.failures.parquet"
            summary = relocate(lock_path or lock, parse_href(f"{self.dest}/"), registry, out, failures, settings,
                               **kwargs)
            return summary, out, failures

    return Pkg()


def test_copies_byte_identical_and_locks_destination(pkg):
    summary, out, failures = pkg.run()
    assert (summary.rows, summary.copied, summary.present, summary.failures) == (8, 8, 0, [])
    assert summary.bytes_copied == summary.bytes_total == sum(r.size for r in iter_lock(pkg.lock))
    old = list(iter_lock(pkg.lock))
    new = list(iter_lock(out))
    assert [r.identity for r in new] == [r.identity for r in old]
    for before, after in zip(old, new, strict=True):
        expected = pkg.dest / "c1" / before.item_id / (before.asset_key + Path(before.location.key).suffix)
        assert after.location.kind == "file" and after.location.key == str(expected)
        assert after.href == f"file://{expected}"
        assert expected.read_bytes() == Path(before.location.key).read_bytes()
        assert after.checksum == sha(expected) and after.size == before.size and after.etag
    assert pq.read_table(failures).num_rows == 0
    # the source tree is untouched and nothing but the copies is in the destination
    assert sorted(p.name for p in pkg.dest.rglob("*") if p.is_file()) == sorted(
        ["data.tif", "thumb.png"] * 4)


def test_second_run_copies_nothing_and_first_lock_stays_valid(pkg):
    pkg.run("first")
    mtimes = {p: p.stat().st_mtime_ns for p in pkg.dest.rglob("*") if p.is_file()}
    summary, out, _ = pkg.run("second")
    assert (summary.copied, summary.present, summary.bytes_copied, summary.failures) == (0, 8, 0, [])
    assert {p: p.stat().st_mtime_ns for p in pkg.dest.rglob("*") if p.is_file()} == mtimes
    report = validate(pkg.root / "first.parquet", pkg.registry, pkg.root / "report.parquet")
    assert report.clean and report.rows == 8
    assert [r.as_record() for r in iter_lock(out)] == [r.as_record() for r in iter_lock(pkg.root / "first.parquet")]


def test_second_run_without_source_checksums_reads_destinations(pkg):
    # a lock built with checksum=True lets the re-run compare against the locked sha256 directly
    build_lock(pkg.items, pkg.registry, pkg.lock, checksum=True)
    first, out, _ = pkg.run("first")
    assert first.copied == 8 and [r.checksum for r in iter_lock(out)] == [r.checksum for r in iter_lock(pkg.lock)]
    second, _, _ = pkg.run("second")
    assert (second.copied, second.present) == (0, 8)


def test_changed_source_fails_only_that_row(pkg):
    rows = list(iter_lock(pkg.lock))
    changed = Path(rows[2].location.key)
    changed.write_bytes(changed.read_bytes() + b"more")
    summary, out, failures = pkg.run()
    assert summary.copied == 7 and len(summary.failures) == 1
    (failure,) = summary.failures
    assert (failure.item_id, failure.asset_key, failure.stage) == (rows[2].item_id, rows[2].asset_key, "relocate")
    assert "changed since it was locked" in failure.error and f"size {rows[2].size} ->" in failure.error
    table = pq.read_table(failures).to_pylist()
    assert [(f["item_id"], f["asset_key"]) for f in table] == [(rows[2].item_id, rows[2].asset_key)]
    assert rows[2].identity not in {r.identity for r in iter_lock(out)}
    assert not (pkg.dest / "c1" / rows[2].item_id / "data.tif").exists()


def test_same_size_change_caught_by_locked_checksum(pkg):
    build_lock(pkg.items, pkg.registry, pkg.lock, checksum=True)
    rows = list(iter_lock(pkg.lock))
    path = Path(rows[0].location.key)
    st = path.stat()
    with open(path, "r+b") as fh:  # same size, same inode, mtime restored: only the bytes tell
        fh.write(b"\x00" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    summary, out, _ = pkg.run()
    assert len(summary.failures) == 1 and summary.failures[0].item_id == rows[0].item_id
    assert "differs from the locked" in summary.failures[0].error
    assert not (pkg.dest / "c1" / rows[0].item_id / "data.tif").exists()  # the partial copy was deleted
    assert len(list(iter_lock(out))) == 7


def test_missing_source_is_a_failure_row(pkg):
    rows = list(iter_lock(pkg.lock))
    Path(rows[5].location.key).unlink()
    summary, out, failures = pkg.run()
    assert summary.copied == 7 and [f.error_code for f in summary.failures] == ["not_found"]
    assert pq.read_table(failures)["asset_key"].to_pylist() == [rows[5].asset_key]


def test_existing_destination_with_other_bytes_is_overwritten(pkg):
    pkg.run("first")
    rows = list(iter_lock(pkg.root / "first.parquet"))
    target = Path(rows[0].location.key)
    good = target.read_bytes()
    target.write_bytes(bytes(len(good)))  # same size, other bytes, same inode (its checksum xattr survives)
    summary, out, _ = pkg.run("second")
    assert (summary.copied, summary.present, summary.failures) == (1, 7, [])
    assert target.read_bytes() == good
    assert list(iter_lock(out))[0].checksum == sha(target)


def test_foreign_destination_file_of_same_size_is_overwritten(pkg):
    rows = list(iter_lock(pkg.lock))
    target = pkg.dest / "c1" / rows[0].item_id / "data.tif"
    write_object(target, rows[0].size, seed=999)
    summary, _, _ = pkg.run()
    assert (summary.copied, summary.present) == (8, 0)
    assert target.read_bytes() == Path(rows[0].location.key).read_bytes()


def test_destination_never_overwrites_another_source(tmp_path):
    # row i2's source sits exactly where row i1's copy would go: refuse before copying anything
    dest = tmp_path / "t"
    a = write_object(tmp_path / "src" / "a.tif", 50, seed=1)
    b = write_object(dest / "c1" / "i1" / "data.tif", 60, seed=2)
    registry = StoreRegistry()
    build_lock([make_item("i1", {"data": a}), make_item("i2", {"data": b})], registry, tmp_path / "lock.parquet")
    before = b.read_bytes()
    with pytest.raises(TemplateError, match="c1/i1/data -> .* is the source of c1/i2/data"):
        relocate(tmp_path / "lock.parquet", parse_href(f"{dest}/"), registry, tmp_path / "out.parquet",
                 tmp_path / "f.parquet", SETTINGS)
    assert b.read_bytes() == before and not (tmp_path / "out.parquet").exists()


def test_relocating_onto_itself_is_a_no_op(pkg):
    # target = the source tree and a template that maps each row onto its own source
    summary = relocate(pkg.lock, parse_href(f"{pkg.root}/src/"), pkg.registry, pkg.root / "o.parquet",
                       pkg.root / "f.parquet", RelocationSettings(chunk_size=5 * MiB, memory_limit=64 * MiB,
                                                                  key_template="{collection}/{filename}"))
    assert (summary.copied, summary.present, summary.failures) == (0, 8, [])


def test_memory_limit_below_one_copy_refused():
    with pytest.raises(ConfigError, match="memory_limit .* below one streaming copy"):
        RelocationSettings(chunk_size=8 * MiB, put_concurrency=4, memory_limit=47 * MiB).check()
    RelocationSettings(chunk_size=8 * MiB, put_concurrency=4, memory_limit=48 * MiB).check()
    with pytest.raises(ConfigError, match="chunk_size must be at least 5 MiB"):
        RelocationSettings(chunk_size=MiB, memory_limit=64 * MiB).check()


def test_memory_limit_refused_before_any_copy(pkg):
    with pytest.raises(ConfigError):
        pkg.run(settings=RelocationSettings(chunk_size=8 * MiB, memory_limit=8 * MiB))
    assert not pkg.dest.exists()


def test_peak_reservation_stays_under_the_limit(tmp_path):
    items = make_items(tmp_path, 30, keys=("data",), size=MiB)
    registry = StoreRegistry()
    build_lock(items, registry, tmp_path / "lock.parquet")
    settings = RelocationSettings(concurrency=16, chunk_size=5 * MiB, put_concurrency=1, memory_limit=16 * MiB)
    summary = relocate(tmp_path / "lock.parquet", parse_href(f"{tmp_path}/dest/"), registry,
                       tmp_path / "out.parquet", tmp_path / "f.parquet", settings)
    assert summary.copied == 30 and summary.failures == []
    # one 1 MiB copy reserves 3 MiB: several run at once, never more than the limit allows
    assert settings.reservation(MiB + 29) <= summary.peak_reserved_bytes <= settings.memory_limit


def test_progress_called_once_per_row(pkg):
    rows = list(iter_lock(pkg.lock))
    Path(rows[1].location.key).unlink()  # failed rows count too
    calls = []
    summary, _, _ = pkg.run(progress=lambda done, total: calls.append((done, total)))
    assert calls == [(n, 8) for n in range(1, 9)] and summary.rows == 8


def test_size_only_verification(pkg):
    summary, out, _ = pkg.run(settings=RelocationSettings(chunk_size=5 * MiB, memory_limit=64 * MiB, verify="size"))
    assert summary.copied == 8
    for r in iter_lock(out):
        assert r.checksum == sha(r.location.key)  # computed while streaming, even without the read-back


def test_empty_lock(tmp_path):
    registry = StoreRegistry()
    build_lock([], registry, tmp_path / "lock.parquet")
    summary = relocate(tmp_path / "lock.parquet", parse_href(f"{tmp_path}/dest/"), registry,
                       tmp_path / "out.parquet", tmp_path / "f.parquet", SETTINGS)
    assert summary.rows == 0 and list(iter_lock(tmp_path / "out.parquet")) == []
