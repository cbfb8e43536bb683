"""Tables built from buffers equal ``pa.Table.from_pylist``'s, and writing our tables keeps pandas out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from packager.arrow_arrays import column_array, table_from_records
from packager.lock import FAILURE_SCHEMA, LOCK_SCHEMA
from packager.validate import REPORT_SCHEMA

TEXTS = ["", "a", "Zürich/ß ✓", "x" * 300, None]
LISTS = [[], ["size"], ["size", "etag", "lässt"], None]


def _records(schema: pa.Schema, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {}
        for field in schema:
            if field.type == pa.string():
                row[field.name] = TEXTS[(i + len(field.name)) % len(TEXTS)]
            elif field.type in (pa.int64(), pa.int32()):
                row[field.name] = None if i % 4 == 3 else (i * 7919 if field.type == pa.int32() else i << 33)
            else:
                row[field.name] = LISTS[(i + len(field.name)) % len(LISTS)]
        rows.append(row)
    return rows


@pytest.mark.parametrize("schema", [LOCK_SCHEMA, FAILURE_SCHEMA, REPORT_SCHEMA], ids=["lock", "failures", "report"])
@pytest.mark.parametrize("n", [0, 1, 17])
def test_tables_equal_from_pylist(schema: pa.Schema, n: int) -> None:
    records = _records(schema, n)
    built = table_from_records(records, schema)
    assert built.schema == schema and built.schema.metadata == schema.metadata
    assert built.equals(pa.Table.from_pylist(records, schema=schema))
    assert built.to_pylist() == records


def test_missing_keys_are_null_and_extra_keys_ignored() -> None:
    table = table_from_records([{"item_id": "i", "asset_key": "a", "not_a_column": 1}], LOCK_SCHEMA)
    row = table.to_pylist()[0]
    assert (row["item_id"], row["size_bytes"], row["etag"]) == ("i", None, None)
    assert "not_a_column" not in row


def test_other_types_still_convert_and_bad_values_are_refused() -> None:
    assert column_array([1.5, None], pa.float64()).to_pylist() == [1.5, None]
    with pytest.raises(OverflowError):
        column_array([1 << 40], pa.int32())
    with pytest.raises(pa.ArrowTypeError, match="cannot hold 3 "):
        column_array(["a", 3], pa.string())
    with pytest.raises(pa.ArrowTypeError, match="column 'size_bytes'.*'big'"):
        table_from_records([{"item_id": "i", "asset_key": "a", "size_bytes": "big"}], LOCK_SCHEMA)


def test_writing_a_lock_and_failures_does_not_load_pandas(tmp_path: Path) -> None:
    """Every command writes a lock, failures or a report; pandas would add ~45 MiB and ~0.4 s to each."""
    code = (
        "import sys; from pathlib import Path; from packager.lock import lock_writer, write_failures, Failure; "
        f"out = Path({str(tmp_path)!r}); "
        "w = lock_writer(out / 'lock.parquet'); w.__enter__(); "
        "w.write({'item_id': 'i', 'asset_key': 'a', 'size_bytes': 3, 'key': 'k', 'etag': None}); "
        "w.__exit__(None, None, None); "
        "write_failures(out / 'failures.parquet', [Failure(None, 'i', 'a', 'h', 'lock', 'error', 'boom', 2)]); "
        "import pyarrow.parquet as pq; "
        "print(pq.ParquetFile(out / 'lock.parquet').metadata.num_rows, pq.ParquetFile(out / 'failures.parquet').metadata.num_rows, "
        "'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.split() == ["1", "1", "False"]
