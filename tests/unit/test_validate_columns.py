"""Quick validation over columns: the statuses, facts and errors a user reads in the report and summary.

Quick mode builds its report from arrow columns (no record dict per row); these pin that every row still
says what happened to its object, the same as the row-by-row deep mode says for the facts both compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packager.errors import TransientStoreError
from packager.locations import Location
from packager.lock import build_lock, iter_lock
from packager.stores import ObjectFacts, Store, StoreRegistry
from packager.validate import REPORT_SCHEMA, int64_array, iso_array, string_array, validate
from tests.unit import make_item, make_items, write_object


def _report(tmp_path: Path, lock: Path, registry: StoreRegistry | None = None, **kwargs):
    summary = validate(lock, registry or StoreRegistry(), tmp_path / "report.parquet", **kwargs)
    table = pq.read_table(tmp_path / "report.parquet")
    assert table.schema.equals(REPORT_SCHEMA) and table.schema.metadata == REPORT_SCHEMA.metadata
    return summary, table.to_pylist()


@pytest.fixture
def drifted(tmp_path: Path):
    """A 6-row lock of local files, then: one grown, one touched, one deleted, one replaced by a folder."""
    lock = tmp_path / "lock.parquet"
    assert build_lock(make_items(tmp_path, 3), StoreRegistry(), lock).failures == []
    rows = list(iter_lock(lock))
    grown, touched, gone, folder = (Path(rows[i].location.key) for i in (1, 2, 4, 5))
    grown.write_bytes(grown.read_bytes() + b"x")
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    gone.unlink()
    folder.unlink()
    folder.mkdir()
    return lock, rows


def test_quick_report_says_what_happened_to_each_object(tmp_path: Path, drifted) -> None:
    lock, rows = drifted
    summary, report = _report(tmp_path, lock)
    assert [(r["item_id"], r["asset_key"]) for r in report] == [(r.item_id, r.asset_key) for r in rows]
    assert [r["status"] for r in report] == ["ok", "changed", "changed", "ok", "missing", "missing"]
    ok, grown, touched, _, gone, folder = report
    assert ok["checks"] == ["size", "etag", "last_modified"] and ok["mismatches"] == [] and ok["error"] is None
    assert (ok["observed_size"], ok["observed_etag"], ok["observed_last_modified"]) == (
        rows[0].size, rows[0].etag, rows[0].last_modified)
    assert ok["href"] == f"file://{rows[0].location.key}" and ok["collection"] == "c1"
    assert "size" in grown["mismatches"] and grown["observed_size"] == rows[1].size + 1
    assert touched["mismatches"] == ["etag", "last_modified"] and touched["observed_size"] == rows[2].size
    shifted = datetime.fromisoformat(rows[2].last_modified) + timedelta(seconds=3)
    assert touched["observed_last_modified"] == shifted.isoformat()
    for missing, row in ((gone, rows[4]), (folder, rows[5])):
        assert row.location.key in missing["error"] and missing["checks"] == missing["mismatches"] == []
        assert missing["observed_size"] is missing["observed_etag"] is missing["observed_last_modified"] is None
        assert missing["expected_size"] == row.size and missing["expected_etag"] == row.etag
    assert all(r["expected_checksum"] is None is r["observed_checksum"] for r in report)
    assert summary.counts == {"ok": 2, "changed": 2, "missing": 2, "error": 0} and summary.rows == 6
    assert summary.bytes_checked == sum(r["observed_size"] or 0 for r in report)
    assert [f["status"] for f in summary.first_failures] == ["changed", "changed", "missing", "missing"]
    assert summary.first_failures[1]["asset"] == f"c1/{rows[2].item_id}/{rows[2].asset_key}"
    assert summary.first_failures[1]["detail"].startswith(f"etag: expected {rows[2].etag!r}, observed ")
    assert rows[4].location.key in summary.first_failures[2]["detail"]


def test_quick_and_deep_agree_on_every_fact_both_compare(tmp_path: Path, drifted) -> None:
    lock, _ = drifted  # a lock without checksums: deep mode compares the same three facts
    _, quick = _report(tmp_path, lock)
    _, deep = _report(tmp_path, lock, deep=True)
    same = [name for name in REPORT_SCHEMA.names if name not in ("observed_checksum", "error")]
    assert [{k: r[k] for k in same} for r in quick] == [{k: r[k] for k in same} for r in deep]


def test_a_lock_with_unrecorded_facts_and_foreign_types(tmp_path: Path) -> None:
    """stacpkg-like: no collection or checksum column, large strings, int32 sizes, a row without ETag."""
    a, b = write_object(tmp_path / "a.bin", 10), write_object(tmp_path / "b b%.bin", 20)
    lock = tmp_path / "lock.parquet"
    build_lock([make_item("i", {"a": a, "b": b})], StoreRegistry(), lock)
    table = pq.read_table(lock).drop_columns(["collection", "checksum", "href", "media_type"])
    table = table.set_column(table.schema.get_field_index("etag"), "etag", pa.array([None, table["etag"][1].as_py()],
                                                                                    pa.large_string()))
    table = table.cast(pa.schema([pa.field(f.name, pa.int32() if f.name == "size_bytes" else
                                           pa.large_string() if f.type == pa.string() else f.type)
                                  for f in table.schema]))
    pq.write_table(table, lock)
    summary, report = _report(tmp_path, lock)
    assert summary.clean and [r["status"] for r in report] == ["ok", "ok"]
    assert report[0]["checks"] == ["size", "last_modified"] and report[0]["expected_etag"] is None
    assert report[0]["observed_etag"] and report[1]["checks"] == ["size", "etag", "last_modified"]
    assert [r["collection"] for r in report] == [None, None]
    assert report[1]["href"] == f"file://{tmp_path}/b%20b%25.bin" and report[1]["expected_size"] == 20


class _HeadOnly:
    """The local-file backend seen as a remote store: no ``head_many``, so rows are HEADed one by one;
    the first HEAD of ``flaky`` fails transiently."""

    def __init__(self, inner: Store, flaky: str) -> None:
        self._inner = inner
        self.describe = inner.describe
        self.flaky = flaky
        self.heads: list[str] = []

    async def head(self, key: str) -> ObjectFacts:
        self.heads.append(key)
        if key == self.flaky and self.heads.count(key) == 1:
            raise TransientStoreError(f"{key}: connection reset", href=key)
        return await self._inner.head(key)


class _HeadOnlyRegistry(StoreRegistry):
    def __init__(self, flaky: str) -> None:
        super().__init__()
        self.store: _HeadOnly | None = None
        self.flaky = flaky

    def store_for(self, location: Location) -> Store:
        self.store = self.store or _HeadOnly(super().store_for(location), self.flaky)
        return self.store  # type: ignore[return-value]


def test_stores_without_batch_head_are_headed_row_by_row_with_retries(tmp_path: Path, drifted) -> None:
    lock, rows = drifted
    _, batched = _report(tmp_path, lock)
    registry = _HeadOnlyRegistry(flaky=rows[3].location.key)
    summary, one_by_one = _report(tmp_path, lock, registry)
    assert summary.retries == 1 and registry.store.heads.count(rows[3].location.key) == 2
    assert sorted(registry.store.heads) == sorted([r.location.key for r in rows] + [rows[3].location.key])
    assert [r["status"] for r in one_by_one] == ["ok", "changed", "changed", "ok", "missing", "missing"]
    same = [name for name in REPORT_SCHEMA.names if name != "error"]
    assert [{k: r[k] for k in same} for r in one_by_one] == [{k: r[k] for k in same} for r in batched]


def test_rows_no_store_serves_are_errors_and_progress_counts_every_row(tmp_path: Path) -> None:
    a = write_object(tmp_path / "a.bin", 10)
    lock = tmp_path / "lock.parquet"
    build_lock([make_item(f"i{n}", {"a": a}) for n in range(5000)], StoreRegistry(), lock)
    table = pq.read_table(lock)
    kinds = ["swift" if n == 4321 else "file" for n in range(table.num_rows)]
    table = table.set_column(table.schema.get_field_index("store_type"), "store_type", pa.array(kinds))
    table = table.set_column(table.schema.get_field_index("store_container"), "store_container",
                             pa.array(["c" if k == "swift" else None for k in kinds]))
    pq.write_table(table, lock)
    seen: list[tuple[int, int]] = []
    summary = validate(lock, StoreRegistry(), tmp_path / "report.parquet", progress=lambda d, t: seen.append((d, t)))
    assert summary.counts == {"ok": 4999, "changed": 0, "missing": 0, "error": 1}
    assert seen[-1] == (5000, 5000) and len(seen) > 1 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    [bad] = [r for r in pq.read_table(tmp_path / "report.parquet").to_pylist() if r["status"] != "ok"]
    assert bad["item_id"] == "i4321" and bad["error"] and bad["checks"] == [] and bad["observed_size"] is None


def test_iso_array_is_isoformat() -> None:
    moments = [datetime(2026, 11, 22, 12, 0, 0, 250000, tzinfo=UTC), datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
               None, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
               datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC)]
    assert iso_array(moments).to_pylist() == [m and m.isoformat() for m in moments]
    other = [*moments, datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=2)))]  # not UTC: kept as is
    assert iso_array(other).to_pylist() == [m and m.isoformat() for m in other]
    assert iso_array([]).to_pylist() == [] and iso_array([None]).to_pylist() == [None]


def test_arrays_from_lists() -> None:
    strings = ["a", None, "", "ünï €", "x" * 1000]
    assert string_array(strings).to_pylist() == strings and string_array(strings).type == pa.string()
    assert int64_array([1, None, 0, -(2**63), 2**63 - 1]).to_pylist() == [1, None, 0, -(2**63), 2**63 - 1]
    assert string_array([]).to_pylist() == [] and int64_array([]).to_pylist() == []


def test_quick_validation_does_not_load_pandas(tmp_path: Path) -> None:
    """``pa.array`` over a list imports pandas (~0.4 s, ~45 MiB); quick mode builds its arrays without it."""
    lock = tmp_path / "lock.parquet"
    build_lock(make_items(tmp_path, 2), StoreRegistry(), lock)
    code = ("import sys; from pathlib import Path; from packager.stores import StoreRegistry; "
            "from packager.validate import validate; "
            f"s = validate(Path({str(lock)!r}), StoreRegistry(), Path({str(tmp_path / 'r.parquet')!r})); "
            "print(s.clean, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.split() == ["True", "False"]
