"""Check a lock against the live objects: is every locked object still what the lock says?

The quick mode HEADs every object and compares size, ETag and last modified. The deep mode also
re-reads every object and compares its sha256 with the lock's ``checksum``, which catches a same-size
rewrite whose ETag or mtime a server kept (WebDAV within one second, a restored mtime on a file).
Every row gets a report row, whatever happened to it.

Quick mode works on columns (:func:`packager.lock.iter_lock_batches`): local files are ``stat``ed a batch
at a time, the comparisons run in arrow over whole columns and each report batch is built from arrays, so
a 100,000-row lock of local files costs seconds, not the ~70 µs a row of one record dict per row. Deep
mode reads every object whole, where the Python per row does not matter, and keeps one dict per row.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from packager.arrow_arrays import int64_array, string_array, string_list_array, validity_bitmap
from packager.checksum import checksum_stream
from packager.concurrency import StoreLimits, ordered_map
from packager.errors import ROW_ERRORS, ObjectNotFound
from packager.locations import Location, safe_href
from packager.lock import LockBatch, LockRow, ParquetTableWriter, count_rows, iter_lock, iter_lock_batches
from packager.retry import is_transient, with_retries
from packager.stores import ObjectFacts, Store, StoreRegistry

STATUSES = ("ok", "changed", "missing", "error")

REPORT_SCHEMA = pa.schema(
    [
        pa.field("collection", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("asset_key", pa.string()),
        pa.field("href", pa.string()),
        pa.field("status", pa.string()),
        pa.field("mismatches", pa.list_(pa.string())),
        pa.field("checks", pa.list_(pa.string())),
        pa.field("expected_size", pa.int64()),
        pa.field("observed_size", pa.int64()),
        pa.field("expected_etag", pa.string()),
        pa.field("observed_etag", pa.string()),
        pa.field("expected_last_modified", pa.string()),
        pa.field("observed_last_modified", pa.string()),
        pa.field("expected_checksum", pa.string()),
        pa.field("observed_checksum", pa.string()),
        pa.field("error", pa.string()),
    ],
    metadata={b"stac-packager:report-kind": b"validation", b"stac-packager:report-version": b"1"},
)

FIRST_FAILURES = 20


@dataclass(slots=True)
class ValidationSummary:
    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    bytes_checked: int = 0
    bytes_read: int = 0
    deep: bool = False
    unverifiable_checksums: int = 0
    retries: int = 0
    first_failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.rows > 0 and self.counts["ok"] == self.rows

    @property
    def drifted(self) -> int:
        return self.rows - self.counts["ok"]


def validate(lock_path: Path, registry: StoreRegistry, report_path: Path, *, deep: bool = False,
             concurrency: int = 32, chunk_size: int = 8 << 20,
             progress: Callable[[int, int], None] | None = None) -> ValidationSummary:
    """Validate every row of ``lock_path``; write one report row per lock row to ``report_path``.

    ``progress(done, total)`` is called after each row.
    """
    return asyncio.run(_validate(lock_path, registry, report_path, deep, concurrency, chunk_size, progress))


#: lock rows checked together in quick mode: one batch of stats for local files, one report batch
BATCH_ROWS = 2048


async def _validate(lock_path, registry, report_path, deep, concurrency, chunk_size,
                    progress=None) -> ValidationSummary:
    summary = ValidationSummary(deep=deep)
    started = time.perf_counter()
    total = count_rows(lock_path)

    def progressed() -> None:
        if progress:
            progress(summary.rows, total)

    if deep:
        await _validate_rows(lock_path, registry, report_path, concurrency, chunk_size, summary, progressed)
    else:
        await _validate_columns(lock_path, registry, report_path, concurrency, summary, progressed)
    summary.seconds = time.perf_counter() - started
    return summary


async def _validate_rows(lock_path, registry, report_path, concurrency, chunk_size, summary: ValidationSummary,
                         progressed: Callable[[], None]) -> None:
    """Deep mode, row by row: each object is read whole, so the Python per row does not matter."""
    checker = _DeepChecker(registry, concurrency=concurrency, chunk_size=chunk_size)
    # small batches so progress moves while large objects are read; two batches overlap so the tail of
    # one does not leave the store idle (the semaphores bound what is really in flight)
    batches = _batched(iter_lock(lock_path), max(concurrency * 2, 1))
    with ParquetTableWriter(report_path, REPORT_SCHEMA) as writer:
        async for records in ordered_map(batches, checker.check_batch, in_flight=2):
            for record in records:
                _account(summary, record)
                writer.write(record)
            progressed()


async def _validate_columns(lock_path, registry, report_path, concurrency, summary: ValidationSummary,
                            progressed: Callable[[], None]) -> None:
    """Quick mode over columns: the lock is read as arrow batches and each report batch is built from
    columns, so a row costs its ``stat`` or HEAD and a few list items, not a :class:`LockRow`, a record
    dict and a trip through ``pa.Table.from_pylist`` (~70 µs a row in all before; see bench/README.md).
    """
    observer = _QuickObserver(registry, concurrency)
    batches = iter_lock_batches(lock_path, BATCH_ROWS, QUICK_COLUMNS)
    with ParquetTableWriter(report_path, REPORT_SCHEMA) as writer:
        async for batch, outcomes in ordered_map(batches, observer.observe, in_flight=2):
            report = _QuickReport(batch, outcomes)
            writer.write_batch(report.record_batch())
            report.account(summary)
            progressed()
    summary.retries += observer.retries


def _batched(rows: Iterable[LockRow], size: int) -> Iterator[tuple[LockRow, ...]]:
    """``itertools.batched`` (Python 3.12+)."""
    iterator = iter(rows)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


class _DeepChecker:
    """Reads the objects of a batch of lock rows and compares them (and their sha256) with the lock.

    Row by row: each object is read whole, so the Python per row does not matter here. A row whose
    observation fails transiently is retried on its own (:func:`with_retries`).
    """

    def __init__(self, registry: StoreRegistry, *, concurrency: int, chunk_size: int) -> None:
        self.registry = registry
        self.chunk_size = chunk_size
        self.limit = asyncio.Semaphore(concurrency)
        self.per_store = StoreLimits(registry, concurrency)

    async def check_batch(self, rows: tuple[LockRow, ...]) -> list[dict]:
        records = [_blank_record(row) for row in rows]
        await asyncio.gather(*(self._check_one(row, record) for row, record in zip(rows, records, strict=True)))
        return records

    async def _check_one(self, row: LockRow, record: dict) -> None:
        try:
            store = self.registry.store_for(row.location)
        except ROW_ERRORS as exc:
            _fail(record, exc)
            return

        async def observe_once():
            async with self.limit, self.per_store.for_location(row.location):
                facts = await store.head(row.location.key)
                read, observed = await checksum_stream(store.stream(row.location.key, self.chunk_size))
                return facts, read, observed

        try:
            (facts, read, observed), record["retries"] = await with_retries(observe_once)
        except ROW_ERRORS as exc:
            _fail(record, exc)
            return
        record["bytes_read"] = read
        _judge(record, row, facts, observed)


def _blank_record(row: LockRow) -> dict:
    return {
        "collection": row.collection, "item_id": row.item_id, "asset_key": row.asset_key,
        "href": safe_href(row.location.href()), "expected_size": row.size, "expected_etag": row.etag,
        "expected_last_modified": row.last_modified, "expected_checksum": row.checksum,
        "checks": [], "mismatches": [], "error": None, "status": "error",
    }


def _fail(record: dict, exc: BaseException) -> None:
    record.update(status="missing" if isinstance(exc, ObjectNotFound) else "error", error=str(exc))


def _judge(record: dict, row: LockRow, facts: ObjectFacts, observed_checksum: str | None) -> None:
    """Fill the observed facts in and decide ok or changed (deep mode; quick mode: :class:`_QuickReport`)."""
    last_modified = facts.last_modified_iso()
    record.update(observed_size=facts.size, observed_etag=facts.etag, observed_last_modified=last_modified,
                  observed_checksum=observed_checksum)
    _compare(record, "size", row.size, facts.size)
    _compare(record, "etag", row.etag, facts.etag)
    _compare(record, "last_modified", row.last_modified, last_modified)
    _compare(record, "checksum", row.checksum, observed_checksum)
    record["status"] = "changed" if record["mismatches"] else "ok"


def _account(summary: ValidationSummary, record: dict) -> None:
    summary.rows += 1
    summary.counts[record["status"]] += 1
    summary.bytes_checked += record.get("observed_size") or 0
    summary.bytes_read += record.pop("bytes_read", 0)
    summary.retries += record.pop("retries", 0)
    if summary.deep and not record["expected_checksum"]:
        summary.unverifiable_checksums += 1
    if record["status"] != "ok" and len(summary.first_failures) < FIRST_FAILURES:
        summary.first_failures.append(_failure_brief(record))


def _compare(record: dict, name: str, expected, observed) -> None:
    """Compare when the lock recorded a value; a fact the lock never had cannot have drifted."""
    if expected is None:
        return
    record["checks"].append(name)
    if observed != expected:
        record["mismatches"].append(name)


def _failure_brief(record: dict) -> dict:
    detail = record["error"] or ", ".join(
        f"{m}: expected {record.get('expected_' + m)!r}, observed {record.get('observed_' + m)!r}"
        for m in record["mismatches"])
    return {"asset": f"{record['collection'] or '-'}/{record['item_id']}/{record['asset_key']}",
            "status": record["status"], "href": record["href"], "detail": detail}


# -- quick mode over columns ----------------------------------------------------------------------------
#: lock columns quick mode reads besides the location ones (not the lock's href nor its media type)
QUICK_COLUMNS = ("size_bytes", "etag", "last_modified", "checksum")
#: the facts quick mode compares, in the order a row's ``checks`` and ``mismatches`` list them; bit i of a
#: row's check code stands for QUICK_FACTS[i]
QUICK_FACTS = ("size", "etag", "last_modified")
#: status codes of quick mode, indices into STATUSES
OK, CHANGED, MISSING, ERROR = range(4)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: what observing one row gave: its facts, or the error that stopped it
Outcome = ObjectFacts | BaseException


class _QuickObserver:
    """The live facts of every row of a :class:`LockBatch`, or the error each row met.

    Each store is asked for all of its rows at once when it can (local files: ``stat`` calls,
    :meth:`ObstoreStore.head_many`), else HEADed row by row under the concurrency limits; a transient
    failure is tried again on its own (:func:`with_retries`), as in deep mode.
    """

    def __init__(self, registry: StoreRegistry, concurrency: int) -> None:
        self.registry = registry
        self.limit = asyncio.Semaphore(concurrency)
        self.per_store = StoreLimits(registry, concurrency)
        self.retries = 0

    async def observe(self, batch: LockBatch) -> tuple[LockBatch, list[Outcome]]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        one_by_one: list[tuple[int, Store]] = []
        for store, indices in self._by_store(batch.locations, outcomes):
            head_many = getattr(store, "head_many", None)
            many = await head_many([batch.locations[i].key for i in indices]) if head_many else None
            if many is None:
                one_by_one.extend((i, store) for i in indices)
                continue
            for i, observed in zip(indices, many, strict=True):
                if isinstance(observed, BaseException) and is_transient(observed):
                    one_by_one.append((i, store))
                else:
                    outcomes[i] = observed
        if one_by_one:
            observed = await asyncio.gather(*(self._head(store, batch.locations[i]) for i, store in one_by_one))
            for (i, _), outcome in zip(one_by_one, observed, strict=True):
                outcomes[i] = outcome
        return batch, outcomes  # type: ignore[return-value]  # every row has its outcome now

    def _by_store(self, locations: list[Location], outcomes: list[Outcome | None]) -> list[tuple[Store, list[int]]]:
        """Row indices per store; a row no store can serve gets its error as outcome.

        Without storage profiles the registry's store for a location depends on its store identity only
        (one client per kind, container and endpoint), so it is asked once per identity, not per row."""
        by_identity = not self.registry.profiles
        seen: dict[tuple, Store] = {}
        groups: dict[int, tuple[Store, list[int]]] = {}
        for i, location in enumerate(locations):
            store = seen.get(location.store_identity()) if by_identity else None
            if store is None:
                try:
                    store = self.registry.store_for(location)
                except ROW_ERRORS as exc:  # its message names the row's href: not shared with others
                    outcomes[i] = exc
                    continue
                if by_identity:
                    seen[location.store_identity()] = store
            groups.setdefault(id(store), (store, []))[1].append(i)
        return list(groups.values())

    async def _head(self, store: Store, location: Location) -> Outcome:
        async def head_once() -> ObjectFacts:
            async with self.limit, self.per_store.for_location(location):
                return await store.head(location.key)

        try:
            facts, retries = await with_retries(head_once)
        except ROW_ERRORS as exc:
            return exc
        self.retries += retries
        return facts


class _QuickReport:
    """The report rows of one :class:`LockBatch` in quick mode, as columns.

    Row for row what :func:`_blank_record`, :func:`_judge` and :func:`_fail` give in deep mode without
    the checksum: a fact is checked when the lock recorded it, and differs when the observed value is not
    the expected one; a row whose object could not be observed is ``missing`` or ``error`` with the
    error's message and no observed facts. The comparisons run in arrow over whole columns; Python only
    takes the observed facts out of their objects.
    """

    def __init__(self, batch: LockBatch, outcomes: Sequence[Outcome]) -> None:
        self.batch = batch
        facts = [None if isinstance(o, BaseException) else o for o in outcomes]
        self.errors = [str(o) if isinstance(o, BaseException) else None for o in outcomes]
        self.expected = [batch.columns[name] for name in ("size_bytes", "etag", "last_modified")]
        self.observed = [int64_array([f and f.size for f in facts]), string_array([f and f.etag for f in facts]),
                         iso_array([f and f.last_modified for f in facts])]
        judged = np.fromiter((f is not None for f in facts), dtype=np.bool_, count=len(facts))
        self.checks = np.zeros(len(facts), dtype=np.int8)
        self.mismatches = np.zeros(len(facts), dtype=np.int8)
        for bit, (expected, observed) in enumerate(zip(self.expected, self.observed, strict=True)):
            self.checks |= (judged & _bools(pc.is_valid(expected))) << bit
            self.mismatches |= (judged & _bools(_differs(expected, observed))) << bit
        missing = np.fromiter((isinstance(o, ObjectNotFound) for o in outcomes), dtype=np.bool_, count=len(facts))
        self.statuses = np.where(judged, np.where(self.mismatches > 0, CHANGED, OK),
                                 np.where(missing, MISSING, ERROR)).astype(np.int8)

    def record_batch(self) -> pa.RecordBatch:
        columns = self.batch.columns
        size, etag, modified = self.observed
        arrays = {
            "collection": columns["collection"], "item_id": columns["item_id"], "asset_key": columns["asset_key"],
            "href": string_array([safe_href(location.href()) for location in self.batch.locations]),
            "status": _names(self.statuses, _STATUS_NAMES),
            "mismatches": _names(self.mismatches, _FACT_LISTS), "checks": _names(self.checks, _FACT_LISTS),
            "expected_size": columns["size_bytes"], "observed_size": size,
            "expected_etag": columns["etag"], "observed_etag": etag,
            "expected_last_modified": columns["last_modified"], "observed_last_modified": modified,
            "expected_checksum": columns["checksum"], "observed_checksum": pa.nulls(len(self.batch), pa.string()),
            "error": string_array(self.errors),
        }
        return pa.RecordBatch.from_arrays([arrays[name] for name in REPORT_SCHEMA.names], schema=REPORT_SCHEMA)

    def account(self, summary: ValidationSummary) -> None:
        summary.rows += len(self.statuses)
        for code, count in enumerate(np.bincount(self.statuses, minlength=len(STATUSES))):
            summary.counts[STATUSES[code]] += int(count)
        summary.bytes_checked += int(pc.sum(self.observed[0]).as_py() or 0)
        for i in np.flatnonzero(self.statuses != OK)[:max(FIRST_FAILURES - len(summary.first_failures), 0)]:
            summary.first_failures.append(_failure_brief(self._record(int(i))))

    def _record(self, i: int) -> dict:
        """Row ``i`` as :func:`_failure_brief` reads a record (only built for the few failures shown)."""
        record = {name: self.batch.columns[name][i].as_py() for name in ("collection", "item_id", "asset_key")}
        record.update(status=STATUSES[self.statuses[i]], error=self.errors[i],
                      href=safe_href(self.batch.locations[i].href()),
                      mismatches=[f for bit, f in enumerate(QUICK_FACTS) if self.mismatches[i] >> bit & 1])
        for name, expected, observed in zip(QUICK_FACTS, self.expected, self.observed, strict=True):
            record[f"expected_{name}"], record[f"observed_{name}"] = expected[i].as_py(), observed[i].as_py()
        return record


def _differs(expected: pa.Array, observed: pa.Array) -> pa.Array:
    """Per row: the lock has the fact and the object shows another value, or none (never null)."""
    return pc.and_kleene(pc.is_valid(expected), pc.or_kleene(pc.not_equal(expected, observed), pc.is_null(observed)))


def _bools(mask: pa.BooleanArray) -> np.ndarray:
    """A boolean arrow array without nulls as numpy (``to_numpy`` would import pandas, see below)."""
    assert mask.null_count == 0, "a mask with nulls has undefined values under them"
    bits = np.frombuffer(mask.buffers()[1], dtype=np.uint8)
    return np.unpackbits(bits, count=mask.offset + len(mask), bitorder="little")[mask.offset:].astype(np.bool_)


# -- arrow arrays from Python lists, without pa.array (see packager.arrow_arrays) -------------------------

def iso_array(moments: Sequence[datetime | None]) -> pa.Array:
    """``moment.isoformat()`` of each (null for None), formatted by arrow when all are UTC: ~1 µs a row
    instead of ~3 µs, the same strings (``…T12:00:00+00:00`` on a whole second, ``…T12:00:00.250000+00:00``
    else; ``tests/unit/test_validate_columns.py`` pins them)."""
    if any(m is not None and m.tzinfo is not UTC for m in moments):
        return string_array([m and m.isoformat() for m in moments])
    micros = np.fromiter(((m - _EPOCH) // _MICROSECOND if m is not None else 0 for m in moments),
                         dtype=np.int64, count=len(moments))
    stamps = pa.Array.from_buffers(pa.timestamp("us"), len(moments), [validity_bitmap(moments), pa.py_buffer(micros)])
    text = stamps.cast(pa.string())  # "2026-11-22 12:00:00.250000", ".000000" on a whole second
    text = pc.binary_replace_slice(text, start=10, stop=11, replacement="T")
    text = pc.replace_substring(text, pattern=".000000", replacement="")  # only a fraction has a '.'
    return pc.binary_replace_slice(text, start=1 << 30, stop=1 << 30, replacement="+00:00")  # appended


def _names(codes: np.ndarray, names: pa.Array) -> pa.Array:
    """``names[code]`` for every int8 code (a status, or a bit set of checked facts)."""
    return names.take(pa.Array.from_buffers(pa.int8(), len(codes), [None, pa.py_buffer(codes)]))


def _fact_lists() -> pa.Array:
    """The 8 ``checks`` / ``mismatches`` lists, at the index of their bits (``["size", "last_modified"]`` at 5)."""
    lists = [[f for bit, f in enumerate(QUICK_FACTS) if code >> bit & 1] for code in range(1 << len(QUICK_FACTS))]
    return string_list_array(lists)


_STATUS_NAMES = string_array(list(STATUSES))
_FACT_LISTS = _fact_lists()
