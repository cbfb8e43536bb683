"""ndjson_to_geoparquet / iter_items: schema over all items, stacpkg-readable types, atomic writes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import packager.items as items_mod
from packager.items import ItemsError, iter_items, ndjson_to_geoparquet

REAL_ITEMS = next(
    (
        p
        for p in (Path("/work/main/data/stac/items.ndjson"), Path("/work/shared/data/stac/items.ndjson"))
        if p.exists()
    ),
    None,
)


def _item(k: int, **extra_props: Any) -> dict[str, Any]:
    x, y = (k % 100) * 0.01, (k // 100) * 0.01
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": f"item-{k:05d}",
        "collection": "c1" if k % 2 else "c2",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y]]],
        },
        "bbox": [x, y, x + 0.01, y + 0.01],
        "properties": {"datetime": "2024-01-01T00:00:00Z", "note": None, **extra_props},
        "links": [],
        "assets": {"data": {"href": f"s3://b/{k}.tif", "roles": ["data"]}},
    }


def _write(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def _types(t: pa.DataType) -> list[pa.DataType]:
    """Every type nested in ``t``."""
    out = [t]
    if pa.types.is_struct(t):
        for f in t:
            out += _types(f.type)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        out += _types(t.value_type)
    return out


def test_late_keys_kept(tmp_path: Path) -> None:
    items = [_item(k) for k in range(5001)]
    items[4999]["assets"]["late_asset"] = {"href": "s3://b/late.tif", "roles": ["overview"]}
    items[4999]["properties"]["late:prop"] = 42
    src = _write(tmp_path / "in.ndjson", items)
    out = tmp_path / "items.parquet"
    s = ndjson_to_geoparquet(src, out, chunk_size=1000)  # the late keys are in the 5th chunk
    assert s.items == 5001 and s.assets == 5002 and s.asset_keys == ["data", "late_asset"]
    assert s.collections == {"c1": 2500, "c2": 2501}
    schema = pq.read_schema(out)
    assert "late:prop" in schema.names and "late_asset" in schema.field("assets").type.names
    back = list(iter_items(out, batch_size=700))
    assert len(back) == 5001
    assert back[4999]["assets"]["late_asset"]["href"] == "s3://b/late.tif"
    assert back[4999]["properties"]["late:prop"] == 42
    assert "late_asset" not in back[0]["assets"] and "late:prop" not in back[0]["properties"]


def test_no_null_types_for_stacpkg(tmp_path: Path) -> None:
    """All-``[]`` stac_extensions and all-null properties must not be list<null>/null (stacpkg enrich)."""
    items = [_item(k, empty_list=[], nested={"a": None, "b": 1}) for k in range(10)]
    out = tmp_path / "items.parquet"
    ndjson_to_geoparquet(_write(tmp_path / "in.ndjson", items), out)
    schema = pq.read_schema(out)
    for f in schema:
        assert not any(pa.types.is_null(t) for t in _types(f.type)), f"{f.name}: {f.type}"
    assert schema.field("stac_extensions").type == pa.list_(pa.string())
    assert schema.field("note").type == pa.string()
    back = next(iter_items(out))
    assert back["stac_extensions"] == [] and back["properties"]["empty_list"] == []


def test_geo_metadata(tmp_path: Path) -> None:
    out = tmp_path / "items.parquet"
    ndjson_to_geoparquet(_write(tmp_path / "in.ndjson", [_item(0), _item(1)]), out)
    meta = pq.read_schema(out).metadata
    geo = json.loads(meta[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert json.loads(meta[b"stac-geoparquet"])["version"] == "1.0.0"
    assert pq.read_schema(out).field("bbox").type.names == ["xmin", "ymin", "xmax", "ymax"]


def test_item_without_assets_kept(tmp_path: Path) -> None:
    a, b = _item(0), _item(1)
    b.pop("assets")
    out = tmp_path / "items.parquet"
    s = ndjson_to_geoparquet(_write(tmp_path / "in.ndjson", [a, b]), out)
    assert s.items == 2 and s.assets == 1
    back = list(iter_items(out))
    assert [it["id"] for it in back] == ["item-00000", "item-00001"] and back[1]["assets"] == {}


def test_conflicting_types_round_trip(tmp_path: Path) -> None:
    """Real collections disagree on types (string vs int); stored as JSON text, decoded on read."""
    items = [_item(0, crs="EPSG:4326", attrs={}), _item(1, crs=4326, attrs={"x": 1})]
    out = tmp_path / "items.parquet"
    s = ndjson_to_geoparquet(_write(tmp_path / "in.ndjson", items), out, chunk_size=1)
    assert "properties.crs" in s.json_encoded_fields
    back = list(iter_items(out))
    assert back[0]["properties"]["crs"] == "EPSG:4326" and back[1]["properties"]["crs"] == 4326


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_text(json.dumps(_item(0)) + "\n\n" + '{"id": "x", oops\n')
    with pytest.raises(ItemsError, match=r"in\.ndjson: line 3 is not valid JSON"):
        ndjson_to_geoparquet(src, tmp_path / "items.parquet")
    assert list(tmp_path.iterdir()) == [src]


def test_empty_input_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "in.ndjson"
    src.write_text("\n")
    with pytest.raises(ItemsError, match="no items"):
        ndjson_to_geoparquet(src, tmp_path / "items.parquet")


def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "in.ndjson", [_item(k) for k in range(30)])
    out = tmp_path / "items.parquet"
    out.write_bytes(b"previous")
    real = items_mod._arrow_batches

    def failing(*args: Any, **kwargs: Any):
        for n, batch in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise OSError("disk full (injected)")
            yield batch

    monkeypatch.setattr(items_mod, "_arrow_batches", failing)
    with pytest.raises(OSError, match="injected"):
        ndjson_to_geoparquet(src, out, chunk_size=10)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson", "items.parquet"]
    out.unlink()
    with pytest.raises(OSError):
        ndjson_to_geoparquet(src, out, chunk_size=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ndjson"]


# --------------------------------------------------------------------------------------------------
# Real items (73 collections, mixed types, 2D/3D bboxes, proj:geometry on some assets only)


CORE = {
    "type",
    "stac_version",
    "stac_extensions",
    "id",
    "geometry",
    "bbox",
    "properties",
    "links",
    "assets",
    "collection",
}


def _norm(value: Any) -> Any:
    """Compare modulo what the Parquet round trip legitimately changes: timestamp text, None, 1.0 vs 1."""
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in "T ":
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


@pytest.mark.skipif(REAL_ITEMS is None, reason="data/stac/items.ndjson not available")
def test_real_items_round_trip(tmp_path: Path) -> None:
    assert REAL_ITEMS is not None
    originals = [json.loads(line) for line in REAL_ITEMS.read_text().splitlines() if line.strip()]
    out = tmp_path / "items.parquet"
    s = ndjson_to_geoparquet(REAL_ITEMS, out, chunk_size=25)
    assert s.items == len(originals) and s.bytes == out.stat().st_size > 0
    assert s.assets == sum(len(it.get("assets", {})) for it in originals)
    assert set(s.collections) == {it["collection"] for it in originals}
    back = list(iter_items(out, batch_size=40))
    assert [it["id"] for it in back] == [it["id"] for it in originals]
    for orig, got in zip(originals, back, strict=True):
        # stac-geoparquet: a property named like a top-level column is dropped, and a non-core top-level
        # key (e.g. a Landsat item's "description") comes back inside properties
        want = {k: v for k, v in orig.items() if k in CORE}
        want["properties"] = {k: v for k, v in orig["properties"].items() if k not in s.dropped_properties}
        want["properties"].update({k: v for k, v in orig.items() if k not in CORE})
        if s.bbox_z_dropped and len(orig["bbox"]) == 6:
            b = orig["bbox"]
            want["bbox"] = [b[0], b[1], b[3], b[4]]
        assert _norm(got) == _norm(want), orig["id"]
