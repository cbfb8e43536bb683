"""Check a lock against the live objects: is every locked object still what the lock says?

The quick mode HEADs every object and compares size, ETag and last modified. The deep mode also
re-reads every object and compares its sha256 with the lock's ``checksum``, which catches a same-size
rewrite whose ETag or mtime a server kept (WebDAV within one second, a restored mtime on a file).
Every row gets a report row, whatever happened to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from packager.checksum import checksum_stream
from packager.concurrency import StoreLimits, ordered_map
from packager.errors import ROW_ERRORS, ObjectNotFound
from packager.locations import safe_href
from packager.lock import ParquetTableWriter, count_rows, iter_lock
from packager.retry import with_retries
from packager.stores import StoreRegistry

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


async def _validate(lock_path, registry, report_path, deep, concurrency, chunk_size,
                    progress=None) -> ValidationSummary:
    summary = ValidationSummary(deep=deep)
    started = time.perf_counter()
    limit = asyncio.Semaphore(concurrency)
    per_store = StoreLimits(registry, concurrency)

    async def check(row) -> dict:
        record = {
            "collection": row.collection, "item_id": row.item_id, "asset_key": row.asset_key,
            "href": safe_href(row.location.href()), "expected_size": row.size, "expected_etag": row.etag,
            "expected_last_modified": row.last_modified, "expected_checksum": row.checksum,
            "checks": [], "mismatches": [], "error": None,
        }
        try:
            store = registry.store_for(row.location)

            async def observe_once():
                async with limit, per_store.for_location(row.location):
                    facts = await store.head(row.location.key)
                    read, observed = await checksum_stream(store.stream(row.location.key, chunk_size)) if deep \
                        else (0, None)
                    return facts, read, observed

            (facts, read, observed), record["retries"] = await with_retries(observe_once)
            record.update(observed_size=facts.size, observed_etag=facts.etag,
                          observed_last_modified=facts.last_modified_iso(), observed_checksum=observed,
                          bytes_read=read)
            _compare(record, "size", row.size, facts.size)
            _compare(record, "etag", row.etag, facts.etag)
            _compare(record, "last_modified", row.last_modified, facts.last_modified_iso())
            if deep:
                _compare(record, "checksum", row.checksum, observed)
            record["status"] = "changed" if record["mismatches"] else "ok"
        except ObjectNotFound as exc:
            record.update(status="missing", error=str(exc))
        except ROW_ERRORS as exc:
            record.update(status="error", error=str(exc))
        return record

    total = count_rows(lock_path) if progress else 0
    with ParquetTableWriter(report_path, REPORT_SCHEMA) as writer:
        async for record in ordered_map(iter_lock(lock_path), check, in_flight=concurrency * 4):
            summary.rows += 1
            summary.counts[record["status"]] += 1
            summary.bytes_checked += record.get("observed_size") or 0
            summary.bytes_read += record.pop("bytes_read", 0)
            summary.retries += record.pop("retries", 0)
            if deep and not record["expected_checksum"]:
                summary.unverifiable_checksums += 1
            if record["status"] != "ok" and len(summary.first_failures) < FIRST_FAILURES:
                summary.first_failures.append(_failure_brief(record))
            writer.write(record)
            if progress:
                progress(summary.rows, total)
    summary.seconds = time.perf_counter() - started
    return summary


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
