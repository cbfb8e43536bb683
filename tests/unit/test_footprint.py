"""The footprint map: a valid PNG whose pixels are drawn where the footprints are, and nowhere else."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import shapely

from packager.footprint import (
    AREA,
    BACKGROUND,
    EXTENT,
    FILL1,
    FILL2,
    FILLS,
    GRATICULE,
    OUTLINE,
    PALETTE,
    normalize,
    read_footprints,
    render_footprints,
)
from packager.items import ndjson_to_geoparquet

DRAWN = set(FILLS) | {OUTLINE}


def decode_png(data: bytes) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Palette indices and palette of an 8-bit palette PNG, checking signature, CRCs and filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + length
    assert [t for t, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, interlace) == (8, 3, 0)
    plte = next(b for t, b in chunks if t == b"PLTE")
    palette = [tuple(plte[i:i + 3]) for i in range(0, len(plte), 3)]
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()  # filter "none" on every row
    return rows[:, 1:], palette


def square(x: float, y: float, size: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + size, y], [x + size, y + size], [x, y + size],
                                                [x, y]]]}


def test_png_is_valid_and_sized():
    fmap = render_footprints([square(10, 45, 1)], width=300)
    pixels, palette = decode_png(fmap.png)
    assert pixels.shape == (fmap.height, fmap.width) and fmap.width == 300
    assert 120 <= fmap.height <= 360
    assert palette == list(PALETTE) and pixels.max() < len(palette)
    assert fmap.drawn == 1 and fmap.missing == 0 and fmap.extent == (10, 45, 11, 46)
    assert fmap.data_uri().startswith("data:image/png;base64,iVBORw0KGgo")
    assert fmap.markdown().startswith("![Footprints of 1 items](data:image/png;base64,")


def test_pixels_inside_the_footprint_are_drawn_and_outside_not():
    fmap = render_footprints([square(10, 45, 1)])
    pixels, _ = decode_png(fmap.png)
    view = fmap.view
    assert pixels[view.pixel(10.5, 45.5)] == FILL1  # the middle of the footprint
    assert pixels[view.pixel(10.02, 45.98)] in (FILL1, OUTLINE)
    # nothing drawn outside the footprint's pixel box (one pixel of slack for the outline)
    (top, left), (bottom, right) = view.pixel(10, 46), view.pixel(11, 45)
    drawn_rows, drawn_cols = np.nonzero(np.isin(pixels, list(DRAWN)))
    assert drawn_rows.min() >= top - 1 and drawn_rows.max() <= bottom + 1
    assert drawn_cols.min() >= left - 1 and drawn_cols.max() <= right + 1
    assert pixels[view.pixel(11.05, 45.5)] in (BACKGROUND, GRATICULE)
    assert pixels[view.pixel(9.95, 45.5)] in (BACKGROUND, GRATICULE)
    # the footprint fills most of its pixel box
    inside = pixels[top + 2:bottom - 1, left + 2:right - 1]
    assert (inside == FILL1).mean() > 0.95


def test_overlaps_are_darker_and_holes_empty():
    ring = [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]
    hole = [[1.5, 1.5], [2.5, 1.5], [2.5, 2.5], [1.5, 2.5], [1.5, 1.5]]
    fmap = render_footprints([{"type": "Polygon", "coordinates": [ring, hole]}, square(3, 3, 2)])
    pixels, _ = decode_png(fmap.png)
    assert pixels[fmap.view.pixel(2, 2)] in (BACKGROUND, GRATICULE)  # the hole
    assert pixels[fmap.view.pixel(0.7, 0.7)] == FILL1
    assert pixels[fmap.view.pixel(3.5, 3.5)] == FILL2  # covered twice
    assert pixels[fmap.view.pixel(4.5, 4.5)] == FILL1
    assert EXTENT in pixels  # the dashed box around all footprints


def test_antimeridian_crossing_is_drawn_the_short_way_round():
    crossing = {"type": "Feature", "bbox": [179.0, -17.0, -179.0, -16.0],  # STAC: west > east
                "geometry": {"type": "Polygon", "coordinates": [[[179, -17], [-179, -17], [-179, -16], [179, -16],
                                                                 [179, -17]]]}}
    fmap = render_footprints([crossing, square(178, -18, 0.5)])
    view = fmap.view
    assert view.east - view.west < 6 and view.west < 180 < view.east  # not the whole world
    assert fmap.extent == (178, -18, -179, -16)
    pixels, _ = decode_png(fmap.png)
    for lon in (179.5, 180.0, -179.5):  # both sides of 180° and on it
        assert pixels[view.pixel(lon, -16.5)] == FILL1, lon
    assert pixels[view.pixel(178.5, -16.5)] in (BACKGROUND, GRATICULE)
    # the same footprint already cut at 180° (as RFC 7946 asks) draws the same pixels
    cut = {"type": "MultiPolygon", "coordinates": [[[[179, -17], [180, -17], [180, -16], [179, -16], [179, -17]]],
                                                   [[[-180, -17], [-179, -17], [-179, -16], [-180, -16],
                                                     [-180, -17]]]]}
    cut_map = render_footprints([(cut, [179.0, -17.0, -179.0, -16.0]), square(178, -18, 0.5)])
    cut_pixels, _ = decode_png(cut_map.png)
    assert cut_map.view == view
    filled = np.isin(pixels, list(FILLS))
    assert (np.isin(cut_pixels, list(FILLS)) == filled).mean() > 0.99
    # without a bbox, an edge jumping over 180° is taken as crossing too
    assert normalize(shapely.geometry.shape(crossing["geometry"])).bounds == (-180, -17, 180, -16)
    assert shapely.get_num_geometries(normalize(shapely.geometry.shape(crossing["geometry"]))) == 2
    # a box that really spans the world (its bbox says west < east) is not cut
    world = {"type": "Feature", "bbox": [-179.9, -60, 179.9, 80], "geometry": crossing["geometry"] | {
        "coordinates": [[[-179.9, -60], [179.9, -60], [179.9, 80], [-179.9, 80], [-179.9, -60]]]}}
    wide = render_footprints([world])
    assert wide.view.east - wide.view.west > 350
    wide_pixels, _ = decode_png(wide.png)
    assert wide_pixels[wide.view.pixel(0, 0)] == FILL1


def test_coordinates_beyond_180_are_wrapped():
    beyond = normalize(shapely.box(175, 10, 185, 12))  # GOES/MODIS-style footprints
    assert beyond.bounds == (-180, 10, 180, 12)
    assert round(shapely.area(beyond), 6) == 20


def test_empty_and_missing_geometries():
    nothing = render_footprints([])
    pixels, _ = decode_png(nothing.png)
    assert nothing.drawn == 0 and nothing.extent is None
    assert (nothing.view.west, nothing.view.east, nothing.view.south, nothing.view.north) == (-180, 180, -90, 90)
    assert set(np.unique(pixels)) <= {BACKGROUND, GRATICULE} and GRATICULE in pixels
    assert "No footprint to draw" in nothing.markdown()

    empties = [None, {"type": "Polygon", "coordinates": []}, {"type": "GeometryCollection", "geometries": []},
               {"type": "Nonsense"}, b"not wkb"]
    fmap = render_footprints([*empties, square(1, 1, 1)])
    assert (fmap.drawn, fmap.missing) == (1, len(empties))
    assert f"{len(empties)} items without a geometry" in fmap.markdown()


def test_points_lines_and_area():
    point = {"type": "Point", "coordinates": [5.5, 5.5]}
    line = {"type": "LineString", "coordinates": [[2, 2], [3, 3]]}
    fmap = render_footprints([point, line], area=[1, 1, 8, 8])
    pixels, _ = decode_png(fmap.png)
    assert pixels[fmap.view.pixel(5.5, 5.5)] == OUTLINE
    assert pixels[fmap.view.pixel(2.5, 2.5)] == OUTLINE
    assert pixels[fmap.view.pixel(1.0, 4.5)] == AREA  # the area's west edge
    assert not np.isin(pixels, list(FILLS)).any()  # nothing to fill
    assert fmap.view.west < 1 and fmap.view.east > 8  # the area is in view


def test_many_footprints_are_bounded():
    squares = [square(i % 50, i // 50, 0.8) for i in range(300)]
    fmap = render_footprints(squares, max_geometries=100)
    assert (fmap.drawn, fmap.skipped) == (100, 200)
    assert "200 more not drawn" in fmap.markdown()


def test_read_footprints_from_items_parquet(tmp_path: Path):
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": f"i{k}", "collection": "c",
              "geometry": square(k, 0, 1), "bbox": [k, 0, k + 1, 1],
              "properties": {"datetime": "2024-01-01T00:00:00Z"}, "assets": {}, "links": []} for k in range(3)]
    items.append({**items[0], "id": "across", "bbox": [179.5, 0, -179.5, 1],
                  "geometry": {"type": "Polygon", "coordinates": [[[179.5, 0], [-179.5, 0], [-179.5, 1],
                                                                   [179.5, 1], [179.5, 0]]]}})
    (tmp_path / "items.ndjson").write_text("\n".join(json.dumps(i) for i in items))
    ndjson_to_geoparquet(tmp_path / "items.ndjson", tmp_path / "items.parquet")
    footprints = list(read_footprints(tmp_path / "items.parquet"))
    assert [b for _, b in footprints] == [[0, 0, 1, 1], [1, 0, 2, 1], [2, 0, 3, 1], [179.5, 0, -179.5, 1]]
    assert [g.bounds for g, _ in footprints[:3]] == [(0, 0, 1, 1), (1, 0, 2, 1), (2, 0, 3, 1)]
    fmap = render_footprints(footprints)
    # the shortest window over 0..3 and both sides of 180°: east from 0 to 179.5 W
    assert fmap.drawn == 4 and fmap.extent == (0, 0, -179.5, 1)


@pytest.mark.parametrize("width", [64, 480, 1024])
def test_widths(width):
    fmap = render_footprints([square(-70, -30, 5)], width=width, min_height=32, max_height=width)
    pixels, _ = decode_png(fmap.png)
    assert pixels.shape[1] == width and pixels[fmap.view.pixel(-67.5, -27.5)] == FILL1
