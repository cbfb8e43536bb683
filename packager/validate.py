"""Check a lock against the live objects: is every locked object still what the lock says?

The quick mode HEADs every object and compares size, ETag and last modified. The deep mode also
re-reads every object and compares its sha256 with the lock's ``checksum``, which catches a same-size
rewrite whose ETag or mtime a server kept (WebDAV within one second, a restored mtime on a file).
Every row gets a report row, whatever happened to it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from packager.checksum import checksum_stream
from packager.concurrency import StoreLimits, ordered_map
from packager.errors import ROW_ERRORS, ObjectNotFound
from packager.locations import safe_href
from packager.lock import LockRow, ParquetTableWriter, count_rows, iter_lock
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
    checker = _BatchChecker(registry, deep=deep, concurrency=concurrency, chunk_size=chunk_size)
    total = count_rows(lock_path)
    # deep batches are small so progress moves while large objects are read; two batches overlap so the
    # tail of one does not leave the store idle (the semaphores bound what is really in flight)
    batch_rows = max(concurrency * 2, 1) if deep else BATCH_ROWS
    batches = _batched(iter_lock(lock_path), batch_rows)
    with ParquetTableWriter(report_path, REPORT_SCHEMA) as writer:
        async for records in ordered_map(batches, checker.check_batch, in_flight=2):
            for record in records:
                _account(summary, record)
                writer.write(record)
            if progress:
                progress(summary.rows, total)
    summary.seconds = time.perf_counter() - started
    return summary


def _batched(rows: Iterable[LockRow], size: int) -> Iterator[tuple[LockRow, ...]]:
    """``itertools.batched`` (Python 3.12+)."""
    iterator = iter(rows)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


class _BatchChecker:
    """Observes the objects of a batch of lock rows and compares them with the lock.

    Quick mode asks each store for all of its rows' facts at once when it can (local files: batched
    ``stat`` calls, :meth:`ObstoreStore.head_many`), else HEADs row by row; deep mode reads every object.
    A row whose observation fails transiently is retried on its own (:func:`with_retries`).
    """

    def __init__(self, registry: StoreRegistry, *, deep: bool, concurrency: int, chunk_size: int) -> None:
        self.registry = registry
        self.deep = deep
        self.chunk_size = chunk_size
        self.limit = asyncio.Semaphore(concurrency)
        self.per_store = StoreLimits(registry, concurrency)

    async def check_batch(self, rows: tuple[LockRow, ...]) -> list[dict]:
        records = [_blank_record(row) for row in rows]
        one_by_one: list[tuple[LockRow, Store, dict]] = []
        groups: dict[int, tuple[Store, list[int]]] = {}
        for index, row in enumerate(rows):
            try:
                store = self.registry.store_for(row.location)
            except ROW_ERRORS as exc:
                _fail(records[index], exc)
                continue
            groups.setdefault(id(store), (store, []))[1].append(index)
        for store, indices in groups.values():
            head_many = None if self.deep else getattr(store, "head_many", None)
            many = await head_many([rows[i].location.key for i in indices]) if head_many else None
            if many is None:
                one_by_one.extend((rows[i], store, records[i]) for i in indices)
                continue
            for i, observed in zip(indices, many, strict=True):
                if isinstance(observed, BaseException):
                    if is_transient(observed):
                        one_by_one.append((rows[i], store, records[i]))
                    else:
                        _fail(records[i], observed)
                else:
                    _judge(records[i], rows[i], observed, None, deep=False)
        if one_by_one:
            await asyncio.gather(*(self._check_one(row, store, record) for row, store, record in one_by_one))
        return records

    async def _check_one(self, row: LockRow, store: Store, record: dict) -> None:
        async def observe_once():
            async with self.limit, self.per_store.for_location(row.location):
                facts = await store.head(row.location.key)
                read, observed = (await checksum_stream(store.stream(row.location.key, self.chunk_size))
                                  if self.deep else (0, None))
                return facts, read, observed

        try:
            (facts, read, observed), record["retries"] = await with_retries(observe_once)
        except ROW_ERRORS as exc:
            _fail(record, exc)
            return
        record["bytes_read"] = read
        _judge(record, row, facts, observed, deep=self.deep)


def _blank_record(row: LockRow) -> dict:
    return {
        "collection": row.collection, "item_id": row.item_id, "asset_key": row.asset_key,
        "href": safe_href(row.location.href()), "expected_size": row.size, "expected_etag": row.etag,
        "expected_last_modified": row.last_modified, "expected_checksum": row.checksum,
        "checks": [], "mismatches": [], "error": None, "status": "error",
    }


def _fail(record: dict, exc: BaseException) -> None:
    record.update(status="missing" if isinstance(exc, ObjectNotFound) else "error", error=str(exc))


def _judge(record: dict, row: LockRow, facts: ObjectFacts, observed_checksum: str | None, *, deep: bool) -> None:
    """Fill the observed facts in and decide ok or changed."""
    last_modified = facts.last_modified_iso()
    record.update(observed_size=facts.size, observed_etag=facts.etag, observed_last_modified=last_modified,
                  observed_checksum=observed_checksum)
    _compare(record, "size", row.size, facts.size)
    _compare(record, "etag", row.etag, facts.etag)
    _compare(record, "last_modified", row.last_modified, last_modified)
    if deep:
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
