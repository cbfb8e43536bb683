"""Arrow arrays and tables from Python values, built from buffers instead of ``pa.array``.

``pa.array`` over a Python list (and so ``pa.Table.from_pylist``) imports pandas on its first call when
pandas is installed, to check whether the list is a pandas object: ~0.4 s of CPU and ~45 MiB of RSS for
a process that never uses pandas (a relocation's RSS target is its memory limit + 100 MiB, and every
lock, failures table and report is written through here). The columns our tables use (strings, 64- and
32-bit integers, lists of strings) are built straight from their buffers; other types still go through
``pa.array``.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa


def validity_bitmap(values: Sequence[object]) -> pa.Buffer | None:
    """Arrow's validity bitmap of ``values`` (None marks a null), or None when nothing is null."""
    valid = np.fromiter((v is not None for v in values), dtype=np.bool_, count=len(values))
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def int64_array(values: Sequence[int | None]) -> pa.Array:
    """An ``int64`` arrow array of ``values`` (None: null)."""
    data = array("q", [0 if v is None else v for v in values])
    return pa.Array.from_buffers(pa.int64(), len(values), [validity_bitmap(values), pa.py_buffer(data)])


def int32_array(values: Sequence[int | None]) -> pa.Array:
    """An ``int32`` arrow array of ``values`` (None: null); a value out of range raises OverflowError."""
    data = array("i", [0 if v is None else v for v in values])
    return pa.Array.from_buffers(pa.int32(), len(values), [validity_bitmap(values), pa.py_buffer(data)])


def string_array(values: Sequence[str | None]) -> pa.Array:
    """A ``string`` arrow array of ``values`` (None: null): UTF-8 bytes and offsets, built once."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    large = pa.Array.from_buffers(pa.large_string(), len(values),
                                  [validity_bitmap(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    return large.cast(pa.string())


def string_list_array(values: Sequence[Sequence[str] | None]) -> pa.Array:
    """A ``list<string>`` arrow array of ``values`` (None: null list; items themselves are never null)."""
    lengths = (0 if v is None else len(v) for v in values)
    offsets = array("i", itertools.accumulate(lengths, initial=0))
    flat = string_array([item for v in values if v is not None for item in v])
    return pa.ListArray.from_buffers(pa.list_(pa.string()), len(values),
                                     [validity_bitmap(values), pa.py_buffer(offsets)], children=[flat])


_BUILDERS = {pa.string(): string_array, pa.int64(): int64_array, pa.int32(): int32_array,
             pa.list_(pa.string()): string_list_array}


def column_array(values: Sequence[object], type_: pa.DataType) -> pa.Array:
    """``values`` as an array of ``type_``: from buffers for the types above, else ``pa.array``.

    A value of another type is an ``ArrowTypeError`` (an integer out of range: ``OverflowError``), as
    from ``pa.array``."""
    builder = _BUILDERS.get(type_)
    if builder is None:
        return pa.array(values, type=type_)
    try:
        return builder(values)
    except (TypeError, AttributeError) as exc:
        wrong = next((v for v in values if v is not None and not _fits(v, type_)), None)
        raise pa.ArrowTypeError(f"a {type_} column cannot hold {wrong!r} ({type(wrong).__name__})") from exc


def _fits(value: object, type_: pa.DataType) -> bool:
    if type_ == pa.string():
        return isinstance(value, str)
    if pa.types.is_integer(type_):
        return isinstance(value, int)
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def table_from_records(records: Iterable[dict], schema: pa.Schema) -> pa.Table:
    """``pa.Table.from_pylist(records, schema=schema)`` without importing pandas: a key missing from a
    record is null, keys outside ``schema`` are ignored."""
    records = list(records)
    columns = []
    for field in schema:
        try:
            columns.append(column_array([record.get(field.name) for record in records], field.type))
        except (pa.ArrowTypeError, pa.ArrowInvalid, OverflowError) as exc:
            raise type(exc)(f"column {field.name!r}: {exc}") from exc
    return pa.Table.from_arrays(columns, schema=schema)
