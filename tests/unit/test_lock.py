"""The asset lock: stacpkg v1 schema first, our columns after; identity, failures, checksums, atomic files."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packager.errors import DuplicateAssetError, LockSchemaError
from packager.locations import Location
from packager.lock import (
    FAILURE_SCHEMA,
    LOCK_SCHEMA,
    AssetFilter,
    ParquetTableWriter,
    build_lock,
    count_rows,
    iter_lock,
    iter_lock_batches,
    open_lock,
    write_failures,
)
from packager.stores import StoreRegistry
from tests.unit import make_item, make_items, write_object

STACPKG_V1 = [
    ("item_id", pa.string(), False),
    ("asset_key", pa.string(), False),
    ("store_type", pa.string(), True),
    ("store_container", pa.string(), True),
    ("store_endpoint_url", pa.string(), True),
    ("key", pa.string(), True),
    ("size_bytes", pa.int64(), True),
    ("etag", pa.string(), True),
    ("last_modified", pa.string(), True),
]
OURS = [("collection", pa.string(), True), ("href", pa.string(), True), ("checksum", pa.string(), True),
        ("media_type", pa.string(), True)]


def _lock(tmp_path, items, **kwargs):
    path = tmp_path / "lock.parquet"
    summary = build_lock(items, StoreRegistry(), path, **kwargs)
    return path, summary


def test_schema_is_stacpkg_v1_then_ours(tmp_path):
    path, _ = _lock(tmp_path, make_items(tmp_path, 2))
    schema = pq.read_schema(path)
    assert [(f.name, f.type, f.nullable) for f in schema] == STACPKG_V1 + OURS
    assert schema.metadata[b"stacpkg:schema-kind"] == b"asset-lock"
    assert schema.metadata[b"stacpkg:schema-version"] == b"v1"
    assert schema.equals(LOCK_SCHEMA, check_metadata=True)


def test_rows_and_facts(tmp_path):
    items = make_items(tmp_path, 3)
    path, summary = _lock(tmp_path, items)
    rows = list(iter_lock(path))
    assert summary.rows == 6 == count_rows(path) and summary.failures == [] and summary.stores == 1
    assert [(r.item_id, r.asset_key) for r in rows] == [(f"item-{i:03d}", k) for i in range(3) for k in ("data", "thumb")]
    first = rows[0]
    src = tmp_path / "src" / "c1" / "item-000-data.tif"
    assert first.location == Location("file", None, str(src))
    assert first.collection == "c1" and first.media_type == "application/octet-stream"
    assert first.size == src.stat().st_size == 1000
    assert first.etag  # obstore's local ETag: inode-mtime-size
    assert datetime.fromisoformat(first.last_modified).utcoffset() is not None
    assert first.checksum is None
    record = pq.read_table(path).to_pylist()[0]
    assert record["store_type"] == "file" and record["store_container"] is None and record["key"] == str(src)
    assert record["href"] == str(src)


def test_checksum_is_sha256_multihash(tmp_path):
    items = make_items(tmp_path, 2)
    path, summary = _lock(tmp_path, items, checksum=True)
    assert summary.checksums == 4
    for r in iter_lock(path):
        with open(r.location.key, "rb") as fh:
            expected = "1220" + hashlib.sha256(fh.read()).hexdigest()
        assert r.checksum == expected and len(r.checksum) == 68


def test_checksum_of_empty_and_multi_chunk_objects(tmp_path):
    empty = write_object(tmp_path / "empty.bin", 0)
    big = write_object(tmp_path / "big.bin", 3 * 65536 + 17, seed=3)
    path, _ = _lock(tmp_path, [make_item("i", {"empty": empty, "big": big})], checksum=True, chunk_size=65536)
    sums = {r.asset_key: (r.size, r.checksum) for r in iter_lock(path)}
    assert sums["empty"] == (0, "1220" + hashlib.sha256(b"").hexdigest())
    assert sums["big"] == (big.stat().st_size, "1220" + hashlib.sha256(big.read_bytes()).hexdigest())


def test_duplicate_identity_names_both_rows(tmp_path):
    a = write_object(tmp_path / "a.tif", 10)
    items = [make_item("i1", {"data": a}), make_item("i2", {"data": a}), make_item("i1", {"data": a})]
    with pytest.raises(DuplicateAssetError) as info:
        _lock(tmp_path, items)
    message = str(info.value)
    assert "c1/i1/data" in message and "#0" in message and "#2" in message
    assert not (tmp_path / "lock.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_same_item_id_in_two_collections_is_not_a_duplicate(tmp_path):
    a = write_object(tmp_path / "a.tif", 10, seed=1)
    b = write_object(tmp_path / "b.tif", 20, seed=2)
    path, summary = _lock(tmp_path, [make_item("i1", {"data": a}, collection="c1"),
                                     make_item("i1", {"data": b}, collection="c2")])
    assert summary.failures == []
    assert [(r.collection, r.item_id, r.asset_key, r.size) for r in iter_lock(path)] == [
        ("c1", "i1", "data", 10), ("c2", "i1", "data", 20)]


def test_missing_object_and_bad_href_are_failures_not_rows(tmp_path):
    a = write_object(tmp_path / "a.tif", 10)
    items = [make_item("i1", {"data": a, "gone": tmp_path / "gone.tif", "ftp": "ftp://h/x.tif", "nohref": ""})]
    path, summary = _lock(tmp_path, items)
    assert [r.asset_key for r in iter_lock(path)] == ["data"]
    by_key = {f.asset_key: f for f in summary.failures}
    assert set(by_key) == {"gone", "ftp", "nohref"}
    assert by_key["gone"].error_code == "not_found" and by_key["gone"].stage == "lock"
    assert str(tmp_path / "gone.tif") in by_key["gone"].error
    assert by_key["ftp"].error_code == "bad_href" and "'ftp'" in by_key["ftp"].error
    assert by_key["nohref"].error_code == "bad_href"
    # the failures table carries them
    n = write_failures(tmp_path / "failures.parquet", summary.failures)
    table = pq.read_table(tmp_path / "failures.parquet")
    assert n == 3 and table.schema.equals(FAILURE_SCHEMA) and set(table["asset_key"].to_pylist()) == set(by_key)


def test_signed_href_locked_without_secret(tmp_path):
    a = write_object(tmp_path / "a.tif", 10)
    path, summary = _lock(tmp_path, [make_item("i1", {"data": f"file://{a}?X-Amz-Signature=S3CR3T&format=tif"})])
    assert summary.failures == []
    raw = (tmp_path / "lock.parquet").read_bytes()
    assert b"S3CR3T" not in raw
    (r,) = iter_lock(path)
    assert r.location.key == str(a) and "S3CR3T" not in r.href


def test_asset_filter(tmp_path):
    items = make_items(tmp_path, 2, keys=("data", "thumb", "metadata"))
    path, _ = _lock(tmp_path, items, assets=AssetFilter(exclude=["metadata"]))
    assert {r.asset_key for r in iter_lock(path)} == {"data", "thumb"}
    path, _ = _lock(tmp_path, items, assets=AssetFilter(include=["thumb"]))
    assert {r.asset_key for r in iter_lock(path)} == {"thumb"}


def test_item_without_id_refused(tmp_path):
    with pytest.raises(LockSchemaError, match="no 'id'"):
        _lock(tmp_path, [{"assets": {}}])


# -- the atomic writer --------------------------------------------------------------------------
SMALL = pa.schema([pa.field("n", pa.int64())])


@pytest.mark.parametrize("rows", [3, 20000])  # before and after the writer's first flush
def test_writer_leaves_nothing_on_error(tmp_path, rows):
    target = tmp_path / "out" / "t.parquet"
    with pytest.raises(RuntimeError, match="boom"), ParquetTableWriter(target, SMALL) as writer:
        for n in range(rows):
            writer.write({"n": n})
        raise RuntimeError("boom")
    assert list((tmp_path / "out").iterdir()) == []


def test_writer_leaves_nothing_when_a_row_is_bad(tmp_path):
    target = tmp_path / "t.parquet"
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)), ParquetTableWriter(target, SMALL) as writer:
        writer.write({"n": "not a number"})
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_previous_file_on_error(tmp_path):
    target = tmp_path / "t.parquet"
    with ParquetTableWriter(target, SMALL) as writer:
        writer.write({"n": 1})
    with pytest.raises(RuntimeError), ParquetTableWriter(target, SMALL) as writer:
        writer.write({"n": 2})
        raise RuntimeError("boom")
    assert pq.read_table(target)["n"].to_pylist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_writer_writes_empty_table(tmp_path):
    with ParquetTableWriter(tmp_path / "t.parquet", SMALL) as writer:
        pass
    assert writer.rows == 0 and pq.read_table(tmp_path / "t.parquet").num_rows == 0


# -- reading ------------------------------------------------------------------------------------
def test_open_lock_wrong_schema(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"id": ["a"], "assets": ["{}"]}), path)
    with pytest.raises(LockSchemaError) as info:
        open_lock(path)
    assert str(path) in str(info.value) and "item_id" in str(info.value) and "store_type" in str(info.value)


def test_open_lock_truncated(tmp_path):
    path, _ = _lock(tmp_path, make_items(tmp_path, 2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LockSchemaError) as info:
        open_lock(path)
    assert str(path) in str(info.value)
    with pytest.raises(LockSchemaError, match="does not exist"):
        open_lock(tmp_path / "nope.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(LockSchemaError, match="text.parquet"):
        list(iter_lock(tmp_path / "text.parquet"))


def test_reads_a_stacpkg_lock(tmp_path):
    a = write_object(tmp_path / "a.tif", 10)
    # what stacpkg writes (9 columns), as another writer might type them: large_string, nullable, no metadata
    schema = pa.schema([(name, pa.int64() if t == pa.int64() else pa.large_string()) for name, t, _ in STACPKG_V1])
    table = pa.table({
        "item_id": ["i1", "i2"], "asset_key": ["data", "remote"], "store_type": ["file", "s3"],
        "store_container": [None, "bucket"], "store_endpoint_url": [None, "http://127.0.0.1:9000"],
        "key": [str(a), "k/b.tif"], "size_bytes": [10, 20], "etag": ['"abc-1"', None],
        "last_modified": ["2026-11-21T19:06:45.272386+00:00", None],
    }, schema=schema)
    pq.write_table(table, tmp_path / "stacpkg.parquet")
    rows = list(iter_lock(tmp_path / "stacpkg.parquet"))
    assert rows[0].location == Location("file", None, str(a)) and rows[0].collection is None
    assert rows[0].etag == '"abc-1"' and rows[0].size == 10 and rows[0].href == f"file://{a}"
    assert rows[1].location == Location("s3", "bucket", "k/b.tif", "http://127.0.0.1:9000")
    assert rows[1].href == "s3://bucket/k/b.tif" and rows[1].checksum is None


def test_our_lock_round_trips(tmp_path):
    path, _ = _lock(tmp_path, make_items(tmp_path, 2), checksum=True)
    rows = list(iter_lock(path))
    with ParquetTableWriter(tmp_path / "again.parquet", LOCK_SCHEMA) as writer:
        for r in rows:
            writer.write(r.as_record())
    assert list(iter_lock(tmp_path / "again.parquet")) == rows


# -- reading as columns (quick validation) --------------------------------------------------------------
def _lock_with_keys(tmp_path, keys: list[str], store_types: list[str] | None = None):
    n = len(keys)
    table = pa.table({"item_id": [f"i{k}" for k in range(n)], "asset_key": ["a"] * n,
                      "store_type": store_types or ["file"] * n, "store_container": [None] * n,
                      "store_endpoint_url": [None] * n, "key": keys, "size_bytes": list(range(n)),
                      "etag": [None] * n, "last_modified": [None] * n})
    pq.write_table(table, tmp_path / "cols.parquet")
    return tmp_path / "cols.parquet"


def test_lock_batches_locate_rows_as_iter_lock(tmp_path):
    keys = ["/a/b.tif", "/a/./b//c.tif", "rel/x.tif", "/a/../b/", "/x/.../y", "/sp ace/%41?#.tif", "/.hidden/."]
    path = _lock_with_keys(tmp_path, keys * 700)  # 4,900 rows: batches of 2,048 cut parquet's 8,192
    batches = list(iter_lock_batches(path, 2048, ("size_bytes", "checksum", "collection")))
    assert [(b.first_row, len(b)) for b in batches] == [(1, 2048), (2049, 2048), (4097, 804)]
    rows = list(iter_lock(path))
    assert [loc for b in batches for loc in b.locations] == [r.location for r in rows]
    assert [loc.href() for b in batches for loc in b.locations] == [r.href for r in rows]
    assert batches[1].columns["size_bytes"].to_pylist() == [r.size for r in rows[2048:4096]]
    assert batches[0].columns["checksum"].null_count == 2048 and batches[0].columns["collection"].type == pa.string()


def test_lock_batches_name_the_bad_row_as_iter_lock(tmp_path):
    types = ["file"] * 3000
    types[2500] = "gopher"
    path = _lock_with_keys(tmp_path, ["/a"] * 3000, types)
    with pytest.raises(LockSchemaError) as by_rows:
        list(iter_lock(path))
    with pytest.raises(LockSchemaError) as by_batches:
        list(iter_lock_batches(path, 2048))
    assert str(by_batches.value) == str(by_rows.value)
    assert "row 2501 (-/i2500/a): lock row has the unsupported store_type 'gopher'" in str(by_rows.value)


def test_writer_keeps_rows_in_order_whichever_way_they_come(tmp_path):
    schema = pa.schema([("n", pa.int64())])
    with ParquetTableWriter(tmp_path / "mixed.parquet", schema) as writer:
        writer.write({"n": 0})
        writer.write_batch(pa.record_batch([pa.array([1, 2])], schema=schema))
        writer.write({"n": 3})
        writer.write_batch(pa.record_batch([pa.array(list(range(4, 9000)))], schema=schema))
        writer.write_batch(pa.record_batch([pa.array([9000])], schema=schema))
    assert pq.read_table(tmp_path / "mixed.parquet")["n"].to_pylist() == list(range(9001)) and writer.rows == 9001
