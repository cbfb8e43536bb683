"""The STAC test data shipped in ``data/stac`` and deterministic synthetic items derived from it.

Real items (``items.ndjson``: 147 items in 73 collections, from PyPI sdists) make the tests see what
real catalogs serve; synthetic clones make exact expected answers possible for searches (bbox,
datetime, filter, sortby, paging), which real, irregular footprints do not.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "stac"
ITEMS_FILE = DATA_DIR / "items.ndjson"
COLLECTIONS_DIR = DATA_DIR / "collections"
SYNTH_COLLECTION = "sentinel-2-l2a-synth"
SYNTH_T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
SYNTH_STEP = dt.timedelta(minutes=137)
SYNTH_WIDTH, SYNTH_HEIGHT = 1.0, 0.9
_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_MGRS_SQUARES = "ABCDEFGH"

Item = dict[str, Any]


def read_ndjson(path: Path) -> Iterator[Item]:
    """The JSON objects of an ndjson file, one per non-empty line."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_ndjson(path: Path, objects: Iterable[Item]) -> int:
    """Write one JSON object per line (``json.dumps`` defaults, so output is byte-stable); return the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for obj in objects:
            fh.write(json.dumps(obj) + "\n")
            n += 1
    return n


def template_item(path: Path = ITEMS_FILE) -> Item:
    """The first real Planetary Computer ``sentinel-2-l2a`` item (24 assets, ~15.8 KB) in ``path``."""
    for item in read_ndjson(path):
        if item.get("collection") == "sentinel-2-l2a" and "planetarycomputer" in json.dumps(
            item.get("links", [])
        ):
            return item
    raise LookupError(f"{path}: no Planetary Computer sentinel-2-l2a item to clone")


def synthetic_items(src_item: Item, n: int, collection: str = SYNTH_COLLECTION) -> Iterator[Item]:
    """``n`` deterministic clones of ``src_item`` (same output for the same arguments, on every run).

    Clone ``k`` (``k = 0 .. n-1``) differs from the source only in:

    * ``id`` = ``f"{src_id}_{k:06d}"``; asset hrefs have ``src_id`` replaced by the new id.
    * geometry: the axis-aligned rectangle ``bbox = [lon, lat, lon + 1.0, lat + 0.9]`` with
      ``lon = -180 + (k * 7.3) % 355`` and ``lat = -60 + (k * 3.1) % 130`` (Python floats, exactly as
      written), also as the Polygon ``geometry``. So a bbox query ``[x0, y0, x1, y1]`` matches clone k
      iff ``lon <= x1 and lon + 1.0 >= x0 and lat <= y1 and lat + 0.9 >= y0`` (intersection, edges count).
    * ``properties.datetime`` = 2020-01-01T00:00:00Z + ``137 min * k`` (distinct, strictly increasing
      with k; clone 1999 is at 2020-07-09T04:06:00Z).
    * ``properties["eo:cloud_cover"]`` = the k-th draw of ``round(random.Random(42).uniform(0, 100), 2)``.
    * ``properties["s2:mgrs_tile"]`` derived from k; ``collection`` = ``collection``;
      self/parent/root/collection links dropped (the server adds its own).

    Tests should compute expected answers by applying the query predicate to these same dicts
    rather than hard-coding counts. Byte-identical to ``gen_synthetic.py`` of the project notes.
    """
    rng = random.Random(42)
    src_id = src_item["id"]
    for k in range(n):
        it = copy.deepcopy(src_item)
        lon = -180 + (k * 7.3) % 355
        lat = -60 + (k * 3.1) % 130
        w, h = SYNTH_WIDTH, SYNTH_HEIGHT
        it["bbox"] = [lon, lat, lon + w, lat + h]
        it["geometry"] = {
            "type": "Polygon",
            "coordinates": [[[lon, lat], [lon + w, lat], [lon + w, lat + h], [lon, lat + h], [lon, lat]]],
        }
        t = SYNTH_T0 + SYNTH_STEP * k
        it["properties"]["datetime"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        it["properties"]["eo:cloud_cover"] = round(rng.uniform(0, 100), 2)
        it["properties"]["s2:mgrs_tile"] = (
            f"{(k % 60) + 1:02d}{_MGRS_BANDS[k % 20]}{_MGRS_SQUARES[k % 8]}{_MGRS_SQUARES[(k // 8) % 8]}"
        )
        it["id"] = f"{src_id}_{k:06d}"
        for asset in it["assets"].values():
            asset["href"] = asset["href"].replace(src_id, it["id"])
        it["collection"] = collection
        it["links"] = [
            li for li in it.get("links", []) if li.get("rel") not in ("self", "parent", "root", "collection")
        ]
        yield it


def bbox_intersects(item_bbox: list[float], query: list[float]) -> bool:
    """Whether a 2D item bbox intersects a 2D query bbox, edges included (what pgstac answers)."""
    k = len(item_bbox) // 2
    return (
        item_bbox[0] <= query[2]
        and item_bbox[k] >= query[0]
        and item_bbox[1] <= query[3]
        and item_bbox[k + 1] >= query[1]
    )


def _when(s: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def _fmt(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def collection_stub(collection_id: str, items: Iterable[Item]) -> Item:
    """A minimal valid STAC Collection for ``items`` (those of ``collection_id``; others are ignored).

    pgstac refuses items whose collection does not exist, and only 6 of the 73 real collections have a
    document; the stub's extent is computed from the items (whole world / open interval if none).
    """
    minx, miny, maxx, maxy = 180.0, 90.0, -180.0, -90.0
    tmin: dt.datetime | None = None
    tmax: dt.datetime | None = None
    n = 0
    for it in items:
        if it.get("collection") != collection_id:
            continue
        n += 1
        b = it.get("bbox")
        if b:
            k = len(b) // 2
            minx, miny, maxx, maxy = min(minx, b[0]), min(miny, b[1]), max(maxx, b[k]), max(maxy, b[k + 1])
        p = it.get("properties", {})
        for s in (p.get("datetime"), p.get("start_datetime"), p.get("end_datetime")):
            t = _when(s)
            if t:
                tmin = t if tmin is None or t < tmin else tmin
                tmax = t if tmax is None or t > tmax else tmax
    bbox = [minx, miny, maxx, maxy] if minx <= maxx else [-180.0, -90.0, 180.0, 90.0]
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": collection_id,
        "description": f"Stub collection for {n} items (no real collection document available)",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[_fmt(tmin), _fmt(tmax)]]}},
        "links": [],
    }


def collection_documents(path: Path | None) -> dict[str, Item]:
    """Collection documents by id from a directory of ``*.json``, a JSON file (one or a list), or None."""
    if path is None:
        return {}
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    out: dict[str, Item] = {}
    for f in files:
        doc = json.loads(f.read_text(encoding="utf-8"))
        for c in doc if isinstance(doc, list) else [doc]:
            if isinstance(c, dict) and c.get("type") == "Collection":
                out.setdefault(c["id"], c)
    return out


def collections_for(item_files: Iterable[Path], docs: Path | None = None) -> list[Item]:
    """Every collection the items name (a real document when given, else a stub), plus document-only ones.

    Sorted by id; the same output as ``make_collections.py`` of the project notes.
    """
    documents = collection_documents(docs)
    by_collection: dict[str, list[Item]] = {}
    for f in item_files:
        for it in read_ndjson(f):
            # keep only what collection_stub reads: the synthetic items are large
            props = it.get("properties", {})
            times = {k: props.get(k) for k in ("datetime", "start_datetime", "end_datetime")}
            slim = {"collection": it["collection"], "bbox": it.get("bbox"), "properties": times}
            by_collection.setdefault(it["collection"], []).append(slim)
    ids = sorted(set(by_collection) | set(documents))
    return [documents[c] if c in documents else collection_stub(c, by_collection[c]) for c in ids]
