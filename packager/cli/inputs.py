"""Items from what a user has at hand, as the NDJSON the engine's :func:`ndjson_to_geoparquet` converts.

* STAC JSON: one Item, a FeatureCollection / ItemCollection, or a JSON list of items;
* NDJSON (``.ndjson``, ``.jsonl``, anything else): passed through; the engine checks every line and
  names the file and line of a bad one;
* STAC GeoParquet (``.parquet``, ours, stac-geoparquet's or stacpkg's ``items.parquet``);
* a package folder (ours or stacpkg's): its ``items.parquet``, else its ``search/items.ndjson``;
* ``-``: NDJSON or STAC JSON on stdin.

Whatever the input, a bad item is reported as the user knows it: ``items.ndjson: line 7``,
``items.json: feature 3``, ``stdin: line 2``, ``old.parquet: row 12`` (never the scratch file).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import orjson

from packager.cli.runtime import UsageError

PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")
JSON_SUFFIXES = (".json", ".geojson")
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".geojsonl", ".ndgeojson", ".geojsons")


class ItemsInput(NamedTuple):
    """The NDJSON to convert, what the input was, and how messages name it (``name: unit N``)."""

    path: Path
    kind: str
    name: str
    unit: str = "line"


def items_as_ndjson(source: str, scratch: Path) -> ItemsInput:
    """The NDJSON for ``source``, with the name and unit that messages about its items use."""
    if source == "-":
        staged = scratch / "stdin.input"
        with open(staged, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)
        return _from_text_file(staged, "stdin", scratch)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"input {source} does not exist")
    if path.is_dir():
        for candidate, kind in ((path / "items.parquet", "package folder"),
                                (path / "search" / "items.ndjson", "package folder (search results)")):
            if candidate.is_file():
                if candidate.suffix == ".parquet":
                    return ItemsInput(_from_parquet(candidate, scratch), kind, str(candidate), "row")
                return ItemsInput(candidate, kind, str(candidate))
        raise UsageError(f"input {source} is a folder without items.parquet or search/items.ndjson: "
                         "give a package folder, a STAC JSON, NDJSON or GeoParquet file")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return ItemsInput(_from_parquet(path, scratch), "STAC GeoParquet", str(path), "row")
    return _from_text_file(path, str(path), scratch)


def _from_parquet(path: Path, scratch: Path) -> Path:
    """The rows of a STAC GeoParquet file as NDJSON (row N of the file is line N)."""
    from packager.items import ItemsError, iter_items

    out = scratch / f"{path.stem}.from-parquet.ndjson"
    with open(out, "wb") as fh:
        try:
            for item in iter_items(path):
                fh.write(orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        except ItemsError as exc:
            raise UsageError(f"input {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"input {path} is not readable STAC GeoParquet ({type(exc).__name__}: {exc}); "
                             "give an items.parquet written by stac-packager, stac-geoparquet or stacpkg") from None
    return out


def _from_text_file(path: Path, name: str, scratch: Path) -> ItemsInput:
    """A JSON document (Item, FeatureCollection, list) is split into NDJSON; anything else is NDJSON."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).lstrip()
    looks_like_document = path.suffix.lower() in JSON_SUFFIXES or head.startswith(b"[")
    if head.startswith(b"{") or head.startswith(b"["):
        try:
            document = orjson.loads(path.read_bytes()) if looks_like_document or _single_document(head) else None
        except orjson.JSONDecodeError as exc:
            if path.suffix.lower() in JSON_SUFFIXES:
                raise UsageError(
                    f"input {name} is not valid JSON ({exc}): fix the document, or if it holds one item per "
                    "line give it an .ndjson name") from None
            document = None  # several JSON lines: NDJSON
        if isinstance(document, dict) and document.get("type") == "Feature" and \
                path.suffix.lower() in NDJSON_SUFFIXES:
            return ItemsInput(path, "NDJSON", name)  # one item on one line: messages say "line 1"
        if document is not None:
            items = _items_of(document, name)
            out = scratch / "input.ndjson"
            with open(out, "wb") as fh:
                for item in items:
                    fh.write(orjson.dumps(item) + b"\n")
            return ItemsInput(out, "STAC JSON", name, "feature")
    return ItemsInput(path, "NDJSON", name)


def _single_document(head: bytes) -> bool:
    """True when the file looks like one JSON value (possibly pretty-printed), not one object per line."""
    lines = [line.strip() for line in head.splitlines()[1:]]
    return not any(line.startswith(b"{") for line in lines)


def _items_of(document, name: str) -> list[dict]:
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        raise UsageError(f"input {name} is JSON but neither a STAC Item, an ItemCollection nor a list of items")
    kind = document.get("type")
    if kind == "Feature":
        return [document]
    if kind == "FeatureCollection" or "features" in document:
        features = document.get("features")
        if not isinstance(features, list):
            raise UsageError(f"input {name}: 'features' is not a list")
        return features
    if kind in ("Collection", "Catalog"):
        raise UsageError(f"input {name} is a STAC {kind}, not items: give its items (NDJSON, ItemCollection)")
    raise UsageError(f"input {name} is JSON of type {json.dumps(kind)}; expected a STAC Item or FeatureCollection")
