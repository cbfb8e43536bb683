"""NDJSON STAC items -> one conformant STAC GeoParquet file, and back.

Why this is not a one-liner around ``stac_geoparquet.arrow.parse_stac_ndjson_to_parquet``:

* **Late keys.** An asset key or property first seen in item 5,000 must reach the parquet (and so the
  asset lock). We infer the schema over *all* items in a first pass, then convert in a second pass;
  memory stays bounded by ``chunk_size`` items, never the whole file.
* **Heterogeneous real items.** Items of different collections disagree on types (PC's
  ``cube:dimensions.*.reference_system`` is a string in one collection, an int in another) and some hold
  empty objects (``attrs: {}``) that Parquet cannot store. pyarrow refuses both. Such fields are stored as
  JSON text, their paths listed in the schema metadata key ``stac_packager:json_paths``, and
  :func:`iter_items` decodes them again: the round trip through this module is lossless for them.
* **stacpkg interop.** Columns whose every value is null or ``[]`` are inferred as ``null`` /
  ``list<null>``; stacpkg's ``items enrich`` fails on those, so they are written as ``string`` /
  ``list<string>`` (also inside structs and lists).
* **Atomicity.** The parquet is written to a temp file next to ``out_path`` and ``os.replace``-d at the
  end; on any error the temp file is removed and ``out_path`` is untouched.

An item without assets (``"assets": {}`` or no ``assets`` key) is kept: it simply adds no lock rows
(counted in ``ItemsSummary.items_without_assets``). Hostile input is refused naming its file and line
(``items.ndjson: line 7``): malformed JSON, a value that is not an item, a non-string id, non-object
assets, a non-string href, an item whose (collection, id) was already seen with different content. An
exact repeat of an earlier item is dropped and counted; signing query parameters (SAS ``sig=``,
``X-Amz-Signature``...) are removed from every href, so no parquet holds a secret.
When 2D and 3D bboxes are mixed, 3D bboxes are written 2D (stac-geoparquet cannot mix them; the geometry
keeps its Z). Timestamps (``datetime``, ``start_datetime``, ``created``...) are stored as
``timestamp[us, UTC]`` and come back as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; keys absent from an item are
dropped on read. stac-geoparquet drops a property whose name collides with a top-level key (e.g. a
non-standard top-level ``description``) with a warning (listed in ``ItemsSummary.dropped_properties``), and a
non-core top-level key comes back inside ``properties``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from stac_geoparquet.arrow import DEFAULT_PARQUET_SCHEMA_VERSION, stac_table_to_items
from stac_geoparquet.arrow._api import stac_items_to_arrow
from stac_geoparquet.arrow._batch import StacJsonBatch
from stac_geoparquet.arrow._to_parquet import create_parquet_metadata
from stac_geoparquet.arrow._util import convert_tuples_to_lists

from packager.atomic import atomic_path
from packager.errors import PackagerError
from packager.locations import strip_item_signatures

JSON_PATHS_KEY = b"stac_packager:json_paths"
"""Schema metadata key listing the field paths stored as JSON text (see module docstring)."""

LIST = "[]"
"""Path segment meaning "every element of this list"."""

Path_ = tuple[str, ...]


class ItemsError(PackagerError, ValueError):
    """The NDJSON cannot be turned into STAC GeoParquet; the message names file, line and fix."""


@dataclass
class ItemsSummary:
    """What was written: enough for Dagster metadata and for a quick sanity check of a package."""

    items: int
    collections: dict[str, int]
    asset_keys: list[str]
    assets: int
    bytes: int
    columns: list[str]
    json_encoded_fields: list[str] = field(default_factory=list)
    """Fields stored as JSON text because items disagree on their type (decoded by :func:`iter_items`)."""
    bbox_z_dropped: bool = False
    """True when 2D and 3D bboxes were mixed, so 3D bboxes were written as 2D (geometries keep Z)."""
    dropped_properties: list[str] = field(default_factory=list)
    """Properties stac-geoparquet drops because some item has a top-level key of the same name."""
    items_without_assets: int = 0
    """Items with no assets: kept in items.parquet, but they give the lock nothing to lock."""
    items_without_assets_sample: list[str] = field(default_factory=list)
    """The first few ids of those items (for a report)."""
    duplicates_dropped: int = 0
    """Exact repeats of an earlier item (same collection, id and content) that were left out."""
    signed_hrefs_stripped: int = 0
    """Asset, alternate and link hrefs whose signing query parameters (SAS, presigned URLs) were removed."""


# --------------------------------------------------------------------------------------------------
# Reading NDJSON with line numbers


@dataclass(frozen=True)
class _Source:
    """The NDJSON file read, and how messages name it: ``name: unit N`` (``items.json: feature 3``)."""

    path: Path
    name: str
    unit: str = "line"

    def at(self, n: int) -> str:
        return f"{self.name}: {self.unit} {n}"

    def span(self, first: int, last: int) -> str:
        return self.at(first) if first == last else f"{self.name}: {self.unit}s {first}-{last}"


@dataclass
class _Ingest:
    """What pass 1 learns while reading, beyond the schema: repeats, signed hrefs, items without assets."""

    skip: set[int] = field(default_factory=set)
    """Numbers of the lines that exactly repeat an earlier item: left out of both passes."""
    seen: dict[int, int] = field(default_factory=dict)
    """64-bit digest of (collection, id) -> 64-bit digest of the item: about 120 bytes per item."""
    signed: int = 0
    without_assets: int = 0
    without_assets_sample: list[str] = field(default_factory=list)


SAMPLE = 5


def _digest(value: Any) -> int:
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _read_ndjson(source: _Source, ingest: _Ingest | None = None,
                 skip: set[int] | frozenset[int] = frozenset()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, item)``; blank lines are skipped, anything else must be a STAC item.

    Signing parameters are removed from every href (:func:`~packager.locations.strip_item_signatures`).
    With ``ingest`` (pass 1), repeats of an earlier ``(collection, id)`` are checked: an exact repeat is
    recorded in ``ingest.skip`` and not yielded, a different item under the same identity is an error.
    """
    with open(source.path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
                line = line[3:]
            if not line.strip() or lineno in skip:
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise ItemsError(
                    f"{source.at(lineno)} is not valid JSON ({err}); each {source.unit} must hold one STAC "
                    f"item: fix or delete that {source.unit}"
                ) from None
            item = _check_item(item, source, lineno)
            signed = strip_item_signatures(item)
            if ingest is not None:
                ingest.signed += signed
                if _is_repeat(item, source, lineno, ingest):
                    continue
            yield lineno, item


def _is_repeat(item: dict[str, Any], source: _Source, lineno: int, ingest: _Ingest) -> bool:
    """True for an exact repeat of an earlier item; a different item under the same identity is an error."""
    identity = _digest([item.get("collection"), item["id"]])
    content = _digest(item)
    earlier = ingest.seen.get(identity)
    if earlier is None:
        ingest.seen[identity] = content
        return False
    if earlier == content:
        ingest.skip.add(lineno)
        return True
    first = _first_line_of(source, item.get("collection"), item["id"], lineno)
    if first is None:  # a 64-bit digest collision between two different identities: not a repeat
        return False
    raise ItemsError(
        f"{source.at(lineno)}: item {item['id']!r} of collection {item.get('collection')!r} is also on "
        f"{source.unit} {first}, with different content; an item's (collection, id) must be unique in a "
        "package: delete the stale one or give it another id"
    )


def _first_line_of(source: _Source, collection: Any, item_id: str, before: int) -> int | None:
    """The first line before ``before`` holding an item with this collection and id (rare: errors only)."""
    with open(source.path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno >= before:
                return None
            try:
                other = orjson.loads(line.lstrip(b"\xef\xbb\xbf") if lineno == 1 else line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(other, dict) and other.get("id") == item_id and other.get("collection") == collection:
                return lineno
    return None


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages to people who wrote JSON."""
    for kind, name in ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"),
                       ((int, float), "number")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


def _check_item(item: Any, source: _Source, lineno: int) -> dict[str, Any]:
    """Reject what stac-geoparquet cannot represent, naming the line, before it fails obscurely."""
    where = source.at(lineno)
    if not isinstance(item, dict) or not item.get("id"):
        raise ItemsError(
            f"{where} is not a STAC item (a JSON object with an 'id'); fix or delete that {source.unit}"
        )
    item_id = item["id"]
    if not isinstance(item_id, str):
        raise ItemsError(f"{where}: item id {item_id!r} is a JSON {_json_type(item_id)}; STAC ids are strings")
    collection = item.get("collection")
    if collection is not None and not isinstance(collection, str):
        raise ItemsError(f"{where}: item {item_id!r} has a 'collection' that is not a string: {collection!r}")
    if not isinstance(item.get("geometry"), dict):
        raise ItemsError(f"{where}: item {item_id!r} has no geometry; STAC GeoParquet needs one per item")
    if not isinstance(item.get("properties"), dict):
        raise ItemsError(f"{where}: item {item_id!r} has no 'properties' object")
    assets = item.get("assets")
    if assets is None:
        item["assets"] = assets = {}  # kept: an item without assets adds no lock rows (counted, reported)
    if not isinstance(assets, dict):
        raise ItemsError(
            f"{where}: item {item_id!r} has 'assets' that is a JSON {_json_type(assets)}; it must be an object "
            "mapping asset keys to asset objects"
        )
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            raise ItemsError(
                f"{where}: item {item_id!r}, asset {key!r} is a JSON {_json_type(asset)}, not an asset object "
                "with an 'href'; fix the asset or delete it"
            )
        href = asset.get("href")
        if href is not None and not isinstance(href, str):
            raise ItemsError(f"{where}: item {item_id!r}, asset {key!r} has an 'href' that is not a string: {href!r}")
    links = item.get("links")
    if links is not None and not (isinstance(links, list) and all(isinstance(link, dict) for link in links)):
        raise ItemsError(f"{where}: item {item_id!r} has 'links' that are not a list of link objects")
    bbox = item.get("bbox")
    if not isinstance(bbox, list) or len(bbox) not in (4, 6):
        raise ItemsError(f"{where}: item {item_id!r} needs a 'bbox' of 4 or 6 numbers, got {bbox!r}")
    return item


def _flatten_bbox(item: dict[str, Any]) -> None:
    """2D-ify a 3D bbox: stac-geoparquet cannot mix 2D and 3D bboxes in one file (geometry keeps Z)."""
    b = item["bbox"]
    if len(b) == 6:
        item["bbox"] = [b[0], b[1], b[3], b[4]]


def _chunks(source: _Source, size: int, ingest: _Ingest | None = None,
            skip: set[int] | frozenset[int] = frozenset()) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Bounded-size chunks of numbered items: the only place items are held in memory."""
    chunk: list[tuple[int, dict[str, Any]]] = []
    for numbered in _read_ndjson(source, ingest, skip):
        chunk.append(numbered)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------------------------------
# Pass 1: schema over all items


class _SchemaBuilder:
    """Unions item schemas; type conflicts and empty objects become JSON-text paths instead of errors."""

    def __init__(self) -> None:
        self.type: pa.StructType = pa.struct([])
        self.json_paths: set[Path_] = set()

    def add(self, chunk: Sequence[tuple[int, dict[str, Any]]], source: _Source) -> None:
        """Infer a chunk's type with pyarrow; on a conflict inside the chunk, bisect down to items."""
        try:
            inferred = StacJsonBatch.from_dicts([item for _, item in chunk]).inner.schema
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            if len(chunk) == 1:
                lineno, item = chunk[0]
                raise ItemsError(
                    f"{source.at(lineno)}: item {item['id']!r} cannot be represented in Arrow ({err}); fix or "
                    f"delete that {source.unit}"
                ) from None
            half = len(chunk) // 2
            self.add(chunk[:half], source)
            self.add(chunk[half:], source)
            return
        except Exception as err:  # shapely / stac-geoparquet errors on one bad item
            if len(chunk) > 1:  # bisect down to the item, so the message names its line
                half = len(chunk) // 2
                self.add(chunk[:half], source)
                self.add(chunk[half:], source)
                return
            raise ItemsError(
                f"{source.at(chunk[0][0])}: item {chunk[0][1]['id']!r} cannot be converted to STAC GeoParquet "
                f"({type(err).__name__}: {err}); fix or delete that {source.unit}"
            ) from None
        self.type = self._merge(self.type, pa.struct(list(inferred)), ())

    def _merge(self, a: pa.DataType, b: pa.DataType, at: Path_) -> pa.DataType:
        """Least common type of ``a`` and ``b``; irreconcilable ones are recorded and become string."""
        if a.equals(b) or pa.types.is_null(b):
            return a
        if pa.types.is_null(a):
            return b
        if pa.types.is_struct(a) and pa.types.is_struct(b):
            fields = {f.name: f.type for f in a}
            for f in b:
                fields[f.name] = (
                    self._merge(fields[f.name], f.type, (*at, f.name)) if f.name in fields else f.type
                )
            return pa.struct([pa.field(name, t) for name, t in fields.items()])
        if _is_list(a) and _is_list(b):
            return pa.list_(self._merge(a.value_type, b.value_type, (*at, LIST)))
        if _is_number(a) and _is_number(b):
            return pa.float64()
        self.json_paths.add(at)
        return pa.string()

    def finish(self) -> pa.Schema:
        """Final JSON-level schema: null types made stacpkg-readable, empty objects and conflicts as text."""
        self._mark_empty_structs(self.type, ())
        outer = _drop_nested_paths(self.json_paths)
        self.json_paths = outer
        return pa.schema(list(_finalize(self.type, (), outer)))

    def _mark_empty_structs(self, t: pa.DataType, at: Path_) -> None:
        """Parquet cannot store ``struct<>``; top-level ``assets: {}`` is dropped by stac-geoparquet itself."""
        if pa.types.is_struct(t):
            if t.num_fields == 0 and at != ("assets",) and at:
                self.json_paths.add(at)
            for f in t:
                self._mark_empty_structs(f.type, (*at, f.name))
        elif _is_list(t):
            self._mark_empty_structs(t.value_type, (*at, LIST))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _drop_nested_paths(paths: set[Path_]) -> set[Path_]:
    """A path inside another JSON-encoded path is encoded with its ancestor already."""
    return {p for p in paths if not any(p[: len(q)] == q and p != q for q in paths)}


def _finalize(t: pa.DataType, at: Path_, json_paths: set[Path_]) -> pa.DataType:
    """Replace JSON-encoded paths by string and ``null`` by string, recursively (list<null> -> list<string>)."""
    if at in json_paths or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _finalize(f.type, (*at, f.name), json_paths)) for f in t])
    if _is_list(t):
        return pa.list_(_finalize(t.value_type, (*at, LIST), json_paths))
    return t


# --------------------------------------------------------------------------------------------------
# JSON-encoding of conflicting fields (write) and decoding (read)


def _transform_at(obj: Any, at: Path_, fn: Any) -> Any:
    """Apply ``fn`` to every value found at path ``at`` (``[]`` walks list elements); returns ``obj``."""
    if not at:
        return fn(obj)
    head, rest = at[0], at[1:]
    if head == LIST and isinstance(obj, list):
        return [_transform_at(v, rest, fn) for v in obj]
    if isinstance(obj, dict) and head in obj:
        obj[head] = _transform_at(obj[head], rest, fn)
    return obj


def _encode(value: Any) -> Any:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------------------------------
# Pass 2: convert and write


def _arrow_batches(
    source: _Source, schema: pa.Schema, json_paths: set[Path_], chunk_size: int, flatten_bbox: bool,
    skip: set[int],
) -> Iterator[pa.RecordBatch]:
    """Convert chunk by chunk with the all-items schema, so every batch has the same columns."""
    for chunk in _chunks(source, chunk_size, skip=skip):
        items = [item for _, item in chunk]
        if flatten_bbox:
            for item in items:
                _flatten_bbox(item)
        for at in json_paths:
            for item in items:
                _transform_at(item, at, _encode)
        try:
            yield stac_items_to_arrow(items, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as err:
            raise ItemsError(
                f"{source.span(chunk[0][0], chunk[-1][0])}: conversion to STAC GeoParquet failed "
                f"({err}); fix or drop the offending item (the file must not change during conversion)"
            ) from err


def _conformed(batches: Iterator[pa.RecordBatch]) -> pa.RecordBatchReader:
    """A reader whose batches all share the first batch's schema (the conversion is deterministic)."""
    first = next(batches)

    def rest() -> Iterator[pa.RecordBatch]:
        yield first
        for batch in batches:
            yield batch if batch.schema.equals(first.schema) else batch.cast(first.schema)

    return pa.RecordBatchReader.from_batches(first.schema, rest())


def _write_parquet(reader: pa.RecordBatchReader, path: Path, json_paths: set[Path_]) -> None:
    """``stac_geoparquet.arrow.to_parquet``, plus our ``json_paths`` key in the schema metadata.

    stac-geoparquet's writer replaces the schema metadata, so we use its metadata builder with our own
    ``ParquetWriter`` (same empty-struct handling: all-``{}`` ``assets`` is dropped, restored on read).
    """
    empty = [f.name for f in reader.schema if pa.types.is_struct(f.type) and f.type.num_fields == 0]
    schema = pa.schema(f for f in reader.schema if f.name not in empty)
    meta = create_parquet_metadata(schema, schema_version=DEFAULT_PARQUET_SCHEMA_VERSION)
    meta[JSON_PATHS_KEY] = json.dumps(sorted(list(p) for p in json_paths)).encode()
    schema = schema.with_metadata(meta)
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in reader:
            writer.write_batch(batch.drop_columns(empty).replace_schema_metadata(meta))


def ndjson_to_geoparquet(ndjson_path: Path, out_path: Path, *, chunk_size: int = 8192,
                         source_name: str | None = None, unit: str = "line") -> ItemsSummary:
    """Convert NDJSON STAC items into one STAC GeoParquet file, atomically, in two bounded passes.

    Pass 1 infers the schema over all items and gathers the summary counts; pass 2 converts
    ``chunk_size`` items at a time and streams them to the writer. Raises :class:`ItemsError` naming the
    file and line for a malformed line, and for an empty input (a package without items is a mistake).
    ``source_name`` and ``unit`` say how messages name the input when the NDJSON was made from something
    else (``items.json: feature 3``, ``stdin: line 2``, ``old.parquet: row 7``).

    Hostile input: an item that is not an object, has a non-string id, non-object assets or a non-string
    href is an error naming its line; an exact repeat of an earlier item is left out
    (``duplicates_dropped``), a *different* item with the same (collection, id) is an error; signing query
    parameters are removed from every href (``signed_hrefs_stripped``); items without assets are kept
    and counted (``items_without_assets``). Duplicate detection holds about 120 bytes per item.
    """
    ndjson_path, out_path = Path(ndjson_path), Path(out_path)
    source = _Source(ndjson_path, source_name or str(ndjson_path), unit)
    builder = _SchemaBuilder()
    ingest = _Ingest()
    collections: Counter[str] = Counter()
    asset_keys: set[str] = set()
    bbox_dims: set[int] = set()
    n_items = n_assets = 0
    for chunk in _chunks(source, chunk_size, ingest):
        builder.add(chunk, source)
        for _, item in chunk:
            n_items += 1
            collections[str(item.get("collection"))] += 1
            asset_keys.update(item["assets"])
            n_assets += len(item["assets"])
            bbox_dims.add(len(item["bbox"]))
            if not item["assets"]:
                ingest.without_assets += 1
                if len(ingest.without_assets_sample) < SAMPLE:
                    ingest.without_assets_sample.append(item["id"])
    ingest.seen.clear()
    if n_items == 0:
        raise ItemsError(f"{source.name} holds no items; check the search returned something")
    schema = builder.finish()
    json_paths = builder.json_paths

    def write(tmp: Path) -> None:
        reader = _conformed(_arrow_batches(source, schema, json_paths, chunk_size, len(bbox_dims) > 1,
                                           ingest.skip))
        _write_parquet(reader, tmp, json_paths)

    with atomic_path(out_path) as tmp:
        write(tmp)
    return ItemsSummary(
        items=n_items,
        collections=dict(sorted(collections.items())),
        asset_keys=sorted(asset_keys),
        assets=n_assets,
        bytes=out_path.stat().st_size,
        columns=pq.read_schema(out_path).names,
        json_encoded_fields=sorted(".".join(p) for p in json_paths),
        bbox_z_dropped=len(bbox_dims) > 1,
        dropped_properties=_colliding_properties(schema),
        items_without_assets=ingest.without_assets,
        items_without_assets_sample=ingest.without_assets_sample,
        duplicates_dropped=len(ingest.skip),
        signed_hrefs_stripped=ingest.signed,
    )


def _colliding_properties(schema: pa.Schema) -> list[str]:
    """Property names that are also top-level columns: stac-geoparquet keeps the top-level one only."""
    props = schema.field("properties").type
    return sorted({f.name for f in props} & set(schema.names))


# --------------------------------------------------------------------------------------------------
# Reading back


def _drop_absent(value: Any, *, keep_datetime: bool = False) -> Any:
    """Drop keys whose value is None: the union schema invents them for items that never had them."""
    if isinstance(value, dict):
        return {
            k: _drop_absent(v)
            for k, v in value.items()
            if v is not None or (keep_datetime and k == "datetime")
        }
    if isinstance(value, list):
        return [_drop_absent(v) for v in value]
    return value


def _restore(item: dict[str, Any], json_paths: list[Path_]) -> dict[str, Any]:
    for at in json_paths:
        _transform_at(item, at, _decode)
    props = item.get("properties")
    item = _drop_absent(item)
    if isinstance(props, dict):
        item["properties"] = _drop_absent(props, keep_datetime=True)
    item.setdefault("type", "Feature")
    return item


def _geojson(wkb: pa.Array) -> list[dict[str, Any] | None]:
    """WKB -> GeoJSON dicts, None where the item had no such geometry."""
    out: list[dict[str, Any] | None] = []
    for g in shapely.from_wkb(wkb):
        if g is None:
            out.append(None)
            continue
        gj = dict(g.__geo_interface__)
        gj["coordinates"] = convert_tuples_to_lists(gj["coordinates"])
        out.append(gj)
    return out


def _without_field(arr: pa.StructArray, name: str) -> pa.StructArray:
    keep = [i for i, f in enumerate(arr.type) if f.name != name]
    children = arr.flatten()
    return pa.StructArray.from_arrays(
        [children[i] for i in keep], fields=[arr.type.field(i) for i in keep], mask=arr.is_null()
    )


def _pop_proj_geometries(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[tuple[Path_, list]]]:
    """Take ``proj:geometry`` columns out before stac-geoparquet reads the batch.

    stac-geoparquet 0.8.3 crashes (``NoneType.__geo_interface__``) when only some items or assets carry a
    ``proj:geometry``, which is normal for mixed collections; we decode them ourselves, None-tolerant.
    """
    extras: list[tuple[Path_, list]] = []
    if "proj:geometry" in batch.schema.names:
        extras.append((("properties", "proj:geometry"), _geojson(batch["proj:geometry"])))
        batch = batch.drop_columns(["proj:geometry"])
    if "assets" not in batch.schema.names or not pa.types.is_struct(batch.schema.field("assets").type):
        return batch, extras
    assets: pa.StructArray = batch["assets"]
    children = assets.flatten()
    changed = False
    for i, f in enumerate(assets.type):
        if pa.types.is_struct(f.type) and f.type.get_field_index("proj:geometry") >= 0:
            child = children[i]
            extras.append((("assets", f.name, "proj:geometry"), _geojson(child.field("proj:geometry"))))
            children[i] = _without_field(child, "proj:geometry")
            changed = True
    if changed:
        fields = [pa.field(f.name, c.type) for f, c in zip(assets.type, children, strict=True)]
        new = pa.StructArray.from_arrays(children, fields=fields, mask=assets.is_null())
        batch = batch.set_column(batch.schema.get_field_index("assets"), "assets", new)
    return batch, extras


def _put_back(item: dict[str, Any], extras: list[tuple[Path_, list]], row: int) -> None:
    for (*parents, leaf), values in extras:
        if values[row] is None:
            continue
        target: Any = item
        for key in parents:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[leaf] = values[row]


REQUIRED_ITEM_COLUMNS = ("id", "geometry")


def open_items_parquet(path: Path) -> pq.ParquetFile:
    """Open a STAC GeoParquet file after checking it is whole and has the columns of STAC items.

    A truncated file (a copy cut short, a crash of a writer that was not atomic) and a parquet file
    that holds something else (a lock, a report) are :class:`ItemsError` naming the file, not a pyarrow
    traceback.
    """
    from packager.lock import open_parquet

    parquet = open_parquet(path, fix="re-create it (stac-packager build, or materialize items_parquet)",
                           error=ItemsError)
    names = parquet.schema_arrow.names
    missing = [c for c in REQUIRED_ITEM_COLUMNS if c not in names]
    if missing:
        raise ItemsError(
            f"{path} is not STAC GeoParquet: it has no {', '.join(missing)} column(s) (its columns: "
            f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''}); give an items.parquet written by "
            "stac-packager, stac-geoparquet or stacpkg"
        )
    return parquet


def iter_items(parquet_path: Path, batch_size: int = 1000) -> Iterator[dict]:
    """Yield the items of a STAC GeoParquet file as STAC dicts, ``batch_size`` rows in memory at a time.

    Works on any stac-geoparquet file; fields this module stored as JSON text are decoded back. A file
    that is cut short, damaged or not STAC GeoParquet raises :class:`ItemsError` naming it.
    """
    pf = open_items_parquet(parquet_path)
    meta = pf.schema_arrow.metadata or {}
    try:
        json_paths = [tuple(p) for p in json.loads(meta.get(JSON_PATHS_KEY, b"[]"))]
    except ValueError:
        raise ItemsError(f"{parquet_path}: schema metadata {JSON_PATHS_KEY.decode()} is not JSON; re-create it") from None
    row = 0
    batches = pf.iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as err:
            raise ItemsError(
                f"{parquet_path} is damaged after row {row} ({err}); it is not a complete parquet file: re-create "
                "it (stac-packager build, or materialize items_parquet)"
            ) from None
        try:
            batch, extras = _pop_proj_geometries(batch)
            items = list(stac_table_to_items(pa.Table.from_batches([batch])))
        except (pa.ArrowException, ValueError, TypeError, KeyError) as err:
            raise ItemsError(
                f"{parquet_path}: rows {row + 1}-{row + batch.num_rows} cannot be read as STAC items "
                f"({type(err).__name__}: {err}); is it STAC GeoParquet? re-create it from the items"
            ) from None
        for index, item in enumerate(items):
            _put_back(item, extras, index)
            yield _restore(item, json_paths)
        row += batch.num_rows
