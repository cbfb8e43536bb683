"""Items that know where their relocated copies are and what their bytes are.

Each relocated asset gains an ``alternate`` entry (alternate-assets extension) pointing at the copy,
and ``file:size`` / ``file:checksum`` (file extension) measured while copying. Assets that were not
relocated are left exactly as published: stacpkg's enrich adds ``null`` fields and strips
``file:checksum`` (its defect 13); we add nothing that is not true.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from packager.lock import iter_lock

ALTERNATE_EXTENSION = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"

Identity = tuple[str | None, str, str]


def relocated_index(lock_path: Path) -> dict[Identity, dict]:
    """(collection, item id, asset key) -> the copy's href, size and checksum."""
    return {
        row.identity: {"href": row.href, "size": row.size, "checksum": row.checksum}
        for row in iter_lock(lock_path)
    }


def enrich_items(items: Iterable[dict], relocated: dict[Identity, dict], *, alternate_name: str,
                 alternate_title: str | None = None) -> Iterator[dict]:
    """Yield each item with its relocated assets enriched; other items pass through unchanged."""
    for item in items:
        touched = False
        for key, asset in (item.get("assets") or {}).items():
            copy = relocated.get((item.get("collection"), item["id"], key))
            if not asset or copy is None:
                continue
            alternate = {"href": copy["href"]}
            if alternate_title:
                alternate["title"] = alternate_title
            asset["alternate"] = {**(asset.get("alternate") or {}), alternate_name: alternate}
            if copy["size"] is not None:
                asset["file:size"] = copy["size"]
            if copy["checksum"]:
                asset["file:checksum"] = copy["checksum"]
            touched = True
        if touched:
            extensions = list(item.get("stac_extensions") or [])
            for uri in (ALTERNATE_EXTENSION, FILE_EXTENSION):
                if uri not in extensions:
                    extensions.append(uri)
            item["stac_extensions"] = extensions
        yield item


def write_enriched_items(items_parquet: Path, relocated_lock: Path, out_path: Path, *, alternate_name: str,
                         workdir: Path) -> Path:
    """``items_parquet`` enriched from ``relocated_lock``, written as STAC GeoParquet to ``out_path``.

    Streams through an NDJSON file in ``workdir`` so items are converted like a search's, with the
    same schema inference (new ``alternate`` and ``file:*`` fields included).
    """
    import orjson

    from packager.items import iter_items, ndjson_to_geoparquet

    ndjson = workdir / "enriched.ndjson"
    index = relocated_index(relocated_lock)
    with open(ndjson, "wb") as out:
        for item in enrich_items(iter_items(items_parquet), index, alternate_name=alternate_name):
            out.write(orjson.dumps(item) + b"\n")
    ndjson_to_geoparquet(ndjson, out_path, source_name=f"{items_parquet} (enriched)", unit="row")
    return out_path
