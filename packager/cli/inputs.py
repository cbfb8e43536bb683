"""Items from what a user has at hand, as the NDJSON the engine's :func:`ndjson_to_geoparquet` converts.

* STAC JSON: one Item, a FeatureCollection / ItemCollection, or a JSON list of items;
* NDJSON (``.ndjson``, ``.jsonl``, anything else): passed through; the engine checks every line and
  names the file and line of a bad one;
* STAC GeoParquet (``.parquet``, ours, stac-geoparquet's or stacpkg's ``items.parquet``);
* a package folder (ours or stacpkg's): its ``items.parquet``, else its ``search/items.ndjson``;
* ``-``: NDJSON or STAC JSON on stdin.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import orjson

from packager.cli.runtime import UsageError

PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")
JSON_SUFFIXES = (".json", ".geojson")


def items_as_ndjson(source: str, scratch: Path) -> tuple[Path, str]:
    """``(ndjson path, kind)`` for ``source``; ``kind`` says what the input was (for messages)."""
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
                    return _from_parquet(candidate, scratch), kind
                return candidate, kind
        raise UsageError(f"input {source} is a folder without items.parquet or search/items.ndjson: "
                         "give a package folder, a STAC JSON, NDJSON or GeoParquet file")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _from_parquet(path, scratch), "STAC GeoParquet"
    return _from_text_file(path, str(path), scratch)


def _from_parquet(path: Path, scratch: Path) -> Path:
    import pyarrow as pa

    from packager.items import iter_items

    out = scratch / f"{path.stem}.from-parquet.ndjson"
    try:
        with open(out, "wb") as fh:
            for item in iter_items(path):
                fh.write(orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    except (pa.ArrowInvalid, OSError, ValueError, KeyError) as exc:
        raise UsageError(f"input {path} is not readable STAC GeoParquet ({exc})") from None
    return out


def _from_text_file(path: Path, name: str, scratch: Path) -> tuple[Path, str]:
    """A JSON document (Item, FeatureCollection, list) is split into NDJSON; anything else is NDJSON."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16).lstrip()
    looks_like_document = path.suffix.lower() in JSON_SUFFIXES or head.startswith(b"[")
    if head.startswith(b"{") or head.startswith(b"["):
        try:
            document = orjson.loads(path.read_bytes()) if looks_like_document or _single_document(head) else None
        except orjson.JSONDecodeError as exc:
            if path.suffix.lower() in JSON_SUFFIXES:
                raise UsageError(f"input {name} is not valid JSON ({exc})") from None
            document = None  # several JSON lines: NDJSON
        if document is not None:
            items = _items_of(document, name)
            out = scratch / "input.ndjson"
            with open(out, "wb") as fh:
                for item in items:
                    fh.write(orjson.dumps(item) + b"\n")
            return out, "STAC JSON"
    return path, "NDJSON"


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
