"""The asset lock: one row per (collection, item id, asset key) with the live object's facts.

The file is ``assets.lock.parquet``. Its first nine columns are stacpkg's v1 lock, with the same names,
types, order and schema metadata, so ``stacpkg asset-lock from-parquet`` reads our locks. Ours follow:
``collection`` (stacpkg has no collection, so the same item id in two collections collides there),
``href`` (the published href with signing parameters removed), ``checksum`` (sha256 multihash, as
STAC ``file:checksum``) and ``media_type``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from packager.arrow_arrays import table_from_records
from packager.atomic import atomic_path
from packager.checksum import checksum_stream
from packager.concurrency import StoreLimits, ordered_map
from packager.errors import ROW_ERRORS, DuplicateAssetError, HrefError, LockSchemaError, StoreError
from packager.locations import Location, location_from_lock_fields, safe_href
from packager.retry import with_retries
from packager.stores import ObjectFacts, StoreRegistry

STACPKG_METADATA = {b"stacpkg:schema-kind": b"asset-lock", b"stacpkg:schema-version": b"v1"}
LOCK_METADATA = {**STACPKG_METADATA, b"stac-packager:lock-version": b"1"}

V1_FIELDS = [
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("asset_key", pa.string(), nullable=False),
    pa.field("store_type", pa.string()),
    pa.field("store_container", pa.string()),
    pa.field("store_endpoint_url", pa.string()),
    pa.field("key", pa.string()),
    pa.field("size_bytes", pa.int64()),
    pa.field("etag", pa.string()),
    pa.field("last_modified", pa.string()),
]
EXTRA_FIELDS = [
    pa.field("collection", pa.string()),
    pa.field("href", pa.string()),
    pa.field("checksum", pa.string()),
    pa.field("media_type", pa.string()),
]
LOCK_SCHEMA = pa.schema(V1_FIELDS + EXTRA_FIELDS, metadata=LOCK_METADATA)

FAILURE_SCHEMA = pa.schema([
    pa.field("collection", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("asset_key", pa.string()),
    pa.field("href", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("error_code", pa.string()),
    pa.field("error", pa.string()),
    pa.field("attempts", pa.int32()),
])

WRITE_BATCH_ROWS = 8192


@dataclass(frozen=True, slots=True)
class LockRow:
    """One locked asset: who it belongs to, where it lives, and what it was when observed."""

    collection: str | None
    item_id: str
    asset_key: str
    location: Location
    href: str
    media_type: str | None = None
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    checksum: str | None = None

    @property
    def identity(self) -> tuple[str | None, str, str]:
        return (self.collection, self.item_id, self.asset_key)

    def label(self) -> str:
        return f"{self.collection or '-'}/{self.item_id}/{self.asset_key}"

    def with_facts(self, facts: ObjectFacts, checksum: str | None = None) -> LockRow:
        return LockRow(self.collection, self.item_id, self.asset_key, self.location, self.href, self.media_type,
                       facts.size, facts.etag, facts.last_modified_iso(), checksum or self.checksum)

    def as_record(self) -> dict:
        loc = self.location
        return {
            "item_id": self.item_id, "asset_key": self.asset_key, "store_type": loc.kind,
            "store_container": loc.container, "store_endpoint_url": loc.endpoint,
            "key": loc.key, "size_bytes": self.size, "etag": self.etag, "last_modified": self.last_modified,
            "collection": self.collection, "href": self.href, "checksum": self.checksum,
            "media_type": self.media_type,
        }


@dataclass(slots=True)
class Failure:
    """A row that could not be processed, kept out of the lock and reported on its own."""

    collection: str | None
    item_id: str
    asset_key: str
    href: str
    stage: str
    error_code: str
    error: str
    attempts: int = 1

    def as_record(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


def failure_of(row: LockRow | AssetRef, stage: str, exc: BaseException, attempts: int = 1) -> Failure:
    code = getattr(exc, "code", None) or "error"
    return Failure(row.collection, row.item_id, row.asset_key, safe_href(row.href), stage, code, str(exc), attempts)


# -- writing and reading ------------------------------------------------------------------------
class ParquetTableWriter:
    """Writes record batches of ``schema`` to ``path``, which appears whole or not at all.

    Rows are buffered into batches of :data:`WRITE_BATCH_ROWS`; the file is written to a temp name and
    renamed on success (:func:`packager.atomic.atomic_path`), so a reader sees the previous complete file
    or the new one, and an error leaves ``path`` untouched.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._buffer: list[dict] = []
        self._batches: list[pa.RecordBatch] = []
        self._batched_rows = 0
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetTableWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd")
        return self

    def write(self, record: dict) -> None:
        self._flush_batches()  # rows stay in the order they were given, whichever way
        self._buffer.append(record)
        if len(self._buffer) >= WRITE_BATCH_ROWS:
            self._flush_records()

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """Rows already in columns (of ``schema``): no dict per row, and no ``pa.array`` over Python
        lists, which imports pandas into the process (~0.4 s, ~45 MiB) when it is installed."""
        self._flush_records()
        self._batches.append(batch)
        self._batched_rows += batch.num_rows
        if self._batched_rows >= WRITE_BATCH_ROWS:
            self._flush_batches()

    def _flush_batches(self) -> None:
        if self._batches and self._writer is not None:
            self._writer.write_table(pa.Table.from_batches(self._batches, schema=self.schema))
            self.rows += self._batched_rows
            self._batches.clear()
            self._batched_rows = 0

    def _flush(self) -> None:
        self._flush_batches()
        self._flush_records()

    def _flush_records(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_table(table_from_records(self._buffer, self.schema))
            self.rows += len(self._buffer)
            self._buffer.clear()

    def __exit__(self, exc_type, exc, tb) -> None:
        flush_error = None
        try:
            if exc_type is None:
                self._flush()
        except BaseException as error:  # a bad last batch must still discard the temp file
            flush_error = error
        finally:
            if self._writer is not None:
                self._writer.close()
        if flush_error is not None:
            self._stack.__exit__(type(flush_error), flush_error, flush_error.__traceback__)
            raise flush_error
        self._stack.__exit__(exc_type, exc, tb)


def lock_writer(path: Path) -> ParquetTableWriter:
    return ParquetTableWriter(path, LOCK_SCHEMA)


def write_failures(path: Path, failures: Iterable[Failure]) -> int:
    with ParquetTableWriter(path, FAILURE_SCHEMA) as writer:
        for failure in failures:
            writer.write(failure.as_record())
    return writer.rows


REQUIRED_COLUMNS = ("item_id", "asset_key", "store_type", "key")
LOCK_FIX = "re-run the lock (stac-packager build, or materialize assets_lock)"


def open_parquet(path: Path, *, fix: str, error: type[Exception] = LockSchemaError) -> pq.ParquetFile:
    """Open a parquet file, or raise ``error`` naming it: missing, empty, cut short or not parquet at all.

    pyarrow's own message ("Parquet magic bytes not found in footer") does not say which file nor what
    to do; this one does (``fix``).
    """
    path = Path(path)
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise error(f"{path} does not exist: {fix}") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a parquet file") from None
    except PermissionError:
        raise error(f"{path} cannot be read: permission denied") from None
    except (pa.ArrowException, OSError) as exc:
        size = path.stat().st_size if path.is_file() else None
        what = "is empty" if size == 0 else "is not a complete parquet file"
        raise error(f"{path} {what} ({exc}): it was cut short, or is not parquet at all; {fix}") from None


def _type_ok(expected: pa.DataType, actual: pa.DataType) -> bool:
    if pa.types.is_null(actual):
        return True
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or actual == pa.string_view()
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    return actual.equals(expected)


def open_lock(path: Path) -> pq.ParquetFile:
    """Open a lock (ours or stacpkg's v1) after checking it is whole and has a lock's columns and types."""
    parquet = open_parquet(path, fix=LOCK_FIX)
    schema = parquet.schema_arrow
    names = set(schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise LockSchemaError(
            f"{path} is not an asset lock: missing column(s) {', '.join(missing)}; expected stacpkg v1 "
            f"columns {', '.join(f.name for f in V1_FIELDS)} (its columns: {', '.join(schema.names[:12])}"
            f"{', ...' if len(schema.names) > 12 else ''}); give the package's assets.lock.parquet or {LOCK_FIX}"
        )
    mistyped = [f"{f.name} is {schema.field(f.name).type}, expected {f.type}"
                for f in LOCK_SCHEMA if f.name in names and not _type_ok(f.type, schema.field(f.name).type)]
    for name in ("item_id", "asset_key", "store_type"):
        if pa.types.is_null(schema.field(name).type):
            mistyped.append(f"{name} is null in every row, expected string")
    if mistyped:
        raise LockSchemaError(f"{path} is not a valid asset lock: column {'; column '.join(mistyped)}; {LOCK_FIX}")
    return parquet


def _read_batches(parquet: pq.ParquetFile, path: Path, batch_size: int) -> Iterator[pa.RecordBatch]:
    """The lock's record batches, every column (a damaged page anywhere is found, whoever reads); a data
    page that does not decode raises :class:`LockSchemaError`."""
    # one decoder thread: rows are consumed one by one anyway, and arrow's pool threads each keep a heap
    # (100,000-row validation: 7 MiB less peak RSS, same time)
    batches = parquet.iter_batches(batch_size=batch_size, use_threads=False)
    number = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise LockSchemaError(f"{path} is damaged after row {number} ({exc}): not a complete parquet file; "
                                  f"{LOCK_FIX}") from None
        number += batch.num_rows
        yield batch


def _bad_row(path: Path, number: int, names: tuple, exc: Exception) -> LockSchemaError:
    """The error for a lock row that cannot be used: file, row number, ``collection/item/asset``, cause."""
    collection, item_id, asset_key = names
    return LockSchemaError(f"{path}: row {number} ({collection or '-'}/{item_id}/{asset_key}): {exc}; {LOCK_FIX}")


def iter_lock(path: Path, batch_size: int = WRITE_BATCH_ROWS) -> Iterator[LockRow]:
    """Stream the rows of a lock, batch by batch, never the whole table at once.

    A damaged lock (a data page that does not decode, a row without item id, an unknown store type)
    raises :class:`LockSchemaError` naming the file and the row, before that row is used.
    """
    number = 0
    for batch in _read_batches(open_lock(path), path, batch_size):
        for record in batch.to_pylist():
            number += 1
            try:
                yield lock_row_from_record(record)
            except (HrefError, LockSchemaError) as exc:
                names = (record.get("collection"), record.get("item_id"), record.get("asset_key"))
                raise _bad_row(path, number, names, exc) from None


def _require_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise LockSchemaError(f"{name} is {value!r}; every lock row needs one")


def lock_row_from_record(record: dict) -> LockRow:
    _require_name("item_id", record.get("item_id"))
    _require_name("asset_key", record.get("asset_key"))
    location = location_from_lock_fields(record.get("store_type"), record.get("store_container"),
                                         record.get("key"), record.get("store_endpoint_url"))
    return LockRow(
        collection=record.get("collection"), item_id=record["item_id"], asset_key=record["asset_key"],
        location=location, href=record.get("href") or location.href(), media_type=record.get("media_type"),
        size=record.get("size_bytes"), etag=record.get("etag"), last_modified=record.get("last_modified"),
        checksum=record.get("checksum"),
    )


# -- reading a lock as columns ------------------------------------------------------------------
#: the columns every row needs to be located (and checked) at all
LOCATION_COLUMNS = ("collection", "item_id", "asset_key", "store_type", "store_container", "key",
                    "store_endpoint_url")


@dataclass(slots=True)
class LockBatch:
    """Consecutive lock rows kept as arrow columns, each row's location parsed and checked.

    What a job that looks at every row but needs few of its fields reads instead of :class:`LockRow`
    objects: building one frozen dataclass per row cost more than validating the row (~12 µs of a
    quick validation's ~70 µs per row). ``columns`` holds the requested :data:`LOCK_SCHEMA` columns in
    its types (``large_string`` and ``int32`` cast; a column the lock lacks, such as ``collection`` in
    a stacpkg lock, all null).
    """

    first_row: int
    """1-based number of the batch's first row in the lock, as errors count rows."""
    columns: dict[str, pa.Array]
    locations: list[Location]

    def __len__(self) -> int:
        return len(self.locations)


def iter_lock_batches(path: Path, batch_size: int = WRITE_BATCH_ROWS,
                      columns: Iterable[str] = ()) -> Iterator[LockBatch]:
    """Stream a lock in :class:`LockBatch` chunks of ``batch_size`` rows: ``columns`` plus the location ones.

    The same checks as :func:`iter_lock`, with the same errors: a damaged lock or a row without item id
    or with an unknown store type raises :class:`LockSchemaError` naming the file and the row, before
    any row of its batch is used. The file is decoded in :func:`iter_lock`'s batches, so a damaged one
    fails after the same row.
    """
    wanted = list(dict.fromkeys((*LOCATION_COLUMNS, *columns)))
    first_row = 1
    for decoded in _read_batches(open_lock(path), path, WRITE_BATCH_ROWS):
        for offset in range(0, decoded.num_rows, batch_size):
            batch = decoded.slice(offset, batch_size)
            arrays = {name: _lock_column(batch, name) for name in wanted}
            yield LockBatch(first_row, arrays, _batch_locations(path, first_row, arrays))
            first_row += batch.num_rows


def _lock_column(batch: pa.RecordBatch, name: str) -> pa.Array:
    """Column ``name`` of ``batch`` in :data:`LOCK_SCHEMA`'s type; all null when the lock has no such column."""
    wanted = LOCK_SCHEMA.field(name).type
    if name not in batch.schema.names:
        return pa.nulls(batch.num_rows, wanted)
    array = batch.column(name)
    return array if array.type.equals(wanted) else array.cast(wanted)


def _batch_locations(path: Path, first_row: int, arrays: dict[str, pa.Array]) -> list[Location]:
    """Every row's location; the first row without item id / asset key, or not locatable, raises."""
    values = [arrays[name].to_pylist() for name in LOCATION_COLUMNS]
    locations = []
    rows = zip(*values, strict=True)
    for number, (collection, item_id, asset_key, kind, container, key, endpoint) in enumerate(rows, first_row):
        try:
            if not (item_id and asset_key):  # None or "" (string columns): say which one
                _require_name("item_id", item_id)
                _require_name("asset_key", asset_key)
            locations.append(location_from_lock_fields(kind, container, key, endpoint))
        except (HrefError, LockSchemaError) as exc:
            raise _bad_row(path, number, (collection, item_id, asset_key), exc) from None
    return locations


def count_rows(path: Path) -> int:
    return open_lock(path).metadata.num_rows


# -- building a lock from items -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AssetRef:
    """An asset as an item lists it, before its href is resolved."""

    collection: str | None
    item_id: str
    asset_key: str
    href: str
    media_type: str | None
    base: str | None
    problem: str | None = None
    """Why this asset cannot be locked at all (not an object, href not a string): its failure row says so."""


@dataclass(slots=True)
class AssetFilter:
    """Which assets to lock: all by default; ``include`` and ``exclude`` are asset keys."""

    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)

    def keeps(self, key: str) -> bool:
        return (self.include is None or key in self.include) and key not in self.exclude


def asset_refs(items: Iterable[dict], assets: AssetFilter | None = None) -> Iterator[AssetRef]:
    """Every asset of every item, in order; a repeated (collection, item, asset) is an error."""
    assets = assets or AssetFilter()
    seen: dict[tuple[str | None, str, str], int] = {}
    for index, item in enumerate(items):
        item_id, collection = item.get("id"), item.get("collection")
        if not item_id or not isinstance(item_id, str):
            raise LockSchemaError(f"item #{index} has no 'id' (a non-empty string; got {item_id!r}): every STAC item needs one")
        links = item.get("links") if isinstance(item.get("links"), list) else []
        base = next((link.get("href") for link in links
                     if isinstance(link, dict) and link.get("rel") == "self" and isinstance(link.get("href"), str)),
                    None)
        item_assets = item.get("assets") or {}
        if not isinstance(item_assets, dict):
            raise LockSchemaError(f"item #{index} ({item_id!r}) has 'assets' that is not an object: "
                                  f"{type(item_assets).__name__}")
        for key, asset in item_assets.items():
            if not asset or not assets.keeps(key):
                continue
            identity = (collection, item_id, key)
            if identity in seen:
                raise DuplicateAssetError(
                    f"asset {collection or '-'}/{item_id}/{key} appears twice (items #{seen[identity]} and "
                    f"#{index}): the lock's identity is (collection, item id, asset key); remove the duplicate "
                    "item or give it another id"
                )
            seen[identity] = index
            if not isinstance(asset, dict):
                yield AssetRef(collection, item_id, key, "", None, base,
                               problem=f"asset is a {type(asset).__name__}, not an object with an 'href'")
                continue
            href = asset.get("href")
            media_type = asset.get("type") if isinstance(asset.get("type"), str) else None
            if href is not None and not isinstance(href, str):
                yield AssetRef(collection, item_id, key, "", media_type, base,
                               problem=f"its 'href' is not a string: {href!r}")
                continue
            yield AssetRef(collection, item_id, key, href or "", media_type, base)


@dataclass(slots=True)
class LockSummary:
    items: int = 0
    items_without_assets: int = 0
    """Items that list no asset at all: nothing of theirs is locked (a documented skip, not an error)."""
    rows: int = 0
    bytes: int = 0
    failures: list[Failure] = field(default_factory=list)
    stores: int = 0
    checksums: int = 0
    retries: int = 0
    seconds: float = 0.0


def build_lock(items: Iterable[dict], registry: StoreRegistry, out_path: Path, *, checksum: bool = False,
               concurrency: int = 32, assets: AssetFilter | None = None, chunk_size: int = 8 << 20,
               progress: Callable[[int], None] | None = None) -> LockSummary:
    """Lock every asset of ``items``: HEAD each live object concurrently, optionally checksum it.

    Rows that fail (bad href, missing object, access denied) are returned as failures and are not
    written into the lock; the caller decides whether that fails the run. ``progress(done)`` is called
    after each asset (locked or failed); items are streamed, so the total is the caller's to know.
    """
    return asyncio.run(_build_lock(items, registry, out_path, checksum, concurrency, assets, chunk_size, progress))


async def _build_lock(items, registry, out_path, checksum, concurrency, assets, chunk_size,
                      progress=None) -> LockSummary:
    summary = LockSummary()
    started = time.perf_counter()
    limit = asyncio.Semaphore(concurrency)
    per_store = StoreLimits(registry, concurrency)
    stores: set[tuple] = set()

    async def observe(ref: AssetRef) -> LockRow | Failure:
        try:
            if ref.problem:
                raise HrefError(f"asset {ref.collection or '-'}/{ref.item_id}/{ref.asset_key}: {ref.problem}")
            try:
                location = registry.resolve(ref.href, collection=ref.collection, base=ref.base)
            except HrefError:
                raise
            except (ValueError, TypeError) as exc:  # an href urllib cannot even split ("http://[::1")
                raise HrefError(f"href {safe_href(ref.href)!r} is not a valid URL ({exc})") from None
            row = LockRow(ref.collection, ref.item_id, ref.asset_key, location, safe_href(ref.href), ref.media_type)
            store = registry.store_for(location)
            stores.add(location.store_identity())

            async def observe_once() -> tuple[ObjectFacts, str | None]:
                async with limit, per_store.for_location(location):
                    facts = await store.head(location.key)
                    digest = None
                    if checksum:
                        size, digest = await checksum_stream(store.stream(location.key, chunk_size))
                        if size != facts.size:
                            raise StoreError(f"{location}: size changed while reading ({facts.size} -> {size})")
                    return facts, digest

            (facts, digest), retries = await with_retries(observe_once)
            summary.retries += retries
            return row.with_facts(facts, digest)
        except ROW_ERRORS as exc:
            return failure_of(ref, "lock", exc, attempts=getattr(exc, "attempts_made", 1))

    def counted(items: Iterable[dict]) -> Iterator[dict]:
        for item in items:
            summary.items += 1
            summary.items_without_assets += not item.get("assets")
            yield item

    with lock_writer(out_path) as writer:
        async for result in ordered_map(asset_refs(counted(items), assets), observe, in_flight=concurrency * 4):
            if progress:
                progress(summary.rows + len(summary.failures) + 1)
            if isinstance(result, Failure):
                summary.failures.append(result)
                continue
            writer.write(result.as_record())
            summary.rows += 1
            summary.bytes += result.size or 0
            summary.checksums += result.checksum is not None
    summary.stores = len(stores)
    summary.seconds = time.perf_counter() - started
    return summary
