"""A footprint map of a package's items: a small PNG drawn from the geometries alone.

No basemap and no network: a lon/lat graticule, each footprint filled (darker where footprints
overlap) and outlined, the bounding box of all footprints, and optionally the area the package was
searched for. The projection is equirectangular, squeezed by the cosine of the middle latitude so
that footprints keep their shape away from the equator.

* **Antimeridian.** RFC 7946 asks for geometries crossing it to be cut into a MultiPolygon at ±180;
  many catalogs do not cut them. A footprint whose STAC ``bbox`` has west > east (how STAC marks a
  crossing) is cut here; without a bbox, a ring with an edge jumping more than 180° of longitude is
  taken as crossing. Coordinates beyond ±180 (seen in GOES and MODIS items) are wrapped. The view then
  spans the footprints the short way round: items on both sides of 180° (Fiji, the Aleutians) give a
  narrow map across it, not a map of the whole world.
* **Empty.** Items without a geometry (STAC allows ``null``) or with an empty one are counted, not
  drawn; with nothing to draw the map is the world's graticule.
* **Bounded.** Rasterizing is vectorized (scanline parity for fills, sampled segments for outlines);
  at most ``max_geometries`` footprints are drawn (evenly sampled, the count says so).

The PNG is palette-coded (a few KiB for hundreds of footprints), so it can travel inline as a
``data:`` URI, e.g. in Markdown. Pure Python on numpy and shapely; nothing here knows Dagster.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from shapely import affinity
from shapely.geometry import box, shape

#: palette indices of the PNG
BACKGROUND, GRATICULE, FILL1, FILL2, FILL3, FILL4, FILL5, EXTENT, OUTLINE, AREA = range(10)
FILLS = (FILL1, FILL2, FILL3, FILL4, FILL5)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (248, 250, 252),  # background
    (214, 219, 227),  # graticule
    (191, 219, 254),  # 1 footprint
    (147, 197, 253),  # 2
    (96, 165, 250),   # 3-4
    (59, 130, 246),   # 5-8
    (29, 78, 216),    # 9 or more
    (100, 116, 139),  # extent of all footprints (dashed)
    (30, 58, 138),    # outlines and points
    (234, 88, 12),    # the searched area
)
#: lower bounds of the overlap counts of FILL1..FILL5
FILL_LEVELS = (1, 2, 3, 5, 9)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRATICULE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 45, 60, 90)


@dataclass(frozen=True)
class View:
    """The lon/lat window of the map and its pixel grid; ``east`` may exceed 180 (a view across 180°)."""

    west: float
    south: float
    east: float
    north: float
    width: int
    height: int

    def to_pixel(self, lon: float, lat: float) -> tuple[float, float]:
        """(column, row) of a lon/lat point, as floats (pixel centers are at .5)."""
        if lon < self.west and lon + 360 <= self.east + 1e-9:
            lon += 360
        col = (lon - self.west) / (self.east - self.west) * self.width
        row = (self.north - lat) / (self.north - self.south) * self.height
        return col, row

    def pixel(self, lon: float, lat: float) -> tuple[int, int]:
        """(row, column) index of the pixel holding a lon/lat point."""
        col, row = self.to_pixel(lon, lat)
        return int(math.floor(row)), int(math.floor(col))


@dataclass(frozen=True)
class FootprintMap:
    png: bytes
    view: View
    drawn: int
    """Footprints drawn."""
    missing: int
    """Items without a geometry, or with an empty one."""
    skipped: int
    """Footprints not drawn because there were more than ``max_geometries``."""
    extent: tuple[float, float, float, float] | None
    """``[west, south, east, north]`` of the footprints, west > east when it crosses the antimeridian."""

    @property
    def width(self) -> int:
        return self.view.width

    @property
    def height(self) -> int:
        return self.view.height

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def markdown(self, what: str = "items", area: str | None = None) -> str:
        """An inline Markdown image and one line saying what it shows."""
        lines = [f"![Footprints of {self.drawn} {what}]({self.data_uri()})", ""]
        if self.extent is None:
            lines.append(f"No footprint to draw ({self.missing} {what} without a geometry).")
            return "\n".join(lines)
        w, s, e, n = self.extent
        text = f"{self.drawn} footprint(s), lon {w:.3f} … {e:.3f}, lat {s:.3f} … {n:.3f}"
        if w > e:
            text += " (across the antimeridian)"
        if self.missing:
            text += f"; {self.missing} {what} without a geometry"
        if self.skipped:
            text += f"; {self.skipped} more not drawn"
        if area:
            text += f". The searched area {area} is outlined in orange"
        lines.append(text + ".")
        return "\n".join(lines)


# -- geometries ------------------------------------------------------------------------------------


def read_footprints(parquet_path: str | Path, batch_size: int = 8192
                    ) -> Iterator[tuple[shapely.Geometry | None, list[float] | None]]:
    """``(geometry, bbox)`` of every item of a STAC GeoParquet file (``None`` where it has none)."""
    parquet = pq.ParquetFile(str(parquet_path))
    names = parquet.schema_arrow.names
    if "geometry" not in names:
        yield from ((None, None) for _ in range(parquet.metadata.num_rows))
        return
    columns = ["geometry"] + (["bbox"] if "bbox" in names else [])
    for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
        column = batch.column(0)
        if isinstance(column.type, pa.ExtensionType):
            column = column.storage
        geoms = shapely.from_wkb(column.to_numpy(zero_copy_only=False), on_invalid="ignore")
        bboxes = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(geoms)
        for geom, bbox in zip(geoms, bboxes, strict=True):
            if isinstance(bbox, dict):
                bbox = [bbox.get("xmin"), bbox.get("ymin"), bbox.get("xmax"), bbox.get("ymax")]
            yield geom, bbox if bbox and None not in bbox else None


def as_geometry(value: Any) -> shapely.Geometry | None:
    """A shapely geometry from GeoJSON (dict), WKB (bytes), WKT (str), a bbox or shapely; ``None`` if empty."""
    if value is None:
        return None
    try:
        if isinstance(value, shapely.Geometry):
            geom = value
        elif isinstance(value, dict):
            geom = shape(value)
        elif isinstance(value, bytes | bytearray | memoryview):
            geom = shapely.from_wkb(bytes(value))
        elif isinstance(value, str):
            geom = shapely.from_wkt(value)
        elif isinstance(value, list | tuple) and len(value) in (4, 6):  # a bbox
            half = len(value) // 2
            geom = _bbox_geometry(value[0], value[1], value[half], value[half + 1])
        else:
            return None
    except Exception:  # malformed GeoJSON: not drawable, counted as missing
        return None
    if geom is None or geom.is_empty:
        return None
    return geom


def _footprint(value: Any) -> tuple[shapely.Geometry | None, bool | None]:
    """A footprint and whether it crosses the antimeridian (``None``: no bbox says).

    ``value``: a geometry (see :func:`as_geometry`), a STAC item (dict with ``geometry`` and ``bbox``)
    or a pair ``(geometry, bbox)``."""
    bbox = None
    if isinstance(value, dict) and value.get("type") == "Feature":
        value, bbox = value.get("geometry"), value.get("bbox")
    elif isinstance(value, tuple) and len(value) == 2:
        value, bbox = value
    crosses = None
    if bbox is not None and len(bbox) in (4, 6):
        crosses = bool(bbox[0] > bbox[len(bbox) // 2])
    elif isinstance(value, list | tuple) and len(value) in (4, 6):
        crosses = bool(value[0] > value[len(value) // 2])  # a bbox as the footprint: already cut
    return as_geometry(value), crosses


def _bbox_geometry(west: float, south: float, east: float, north: float) -> shapely.Geometry:
    if west <= east:
        return box(west, south, east, north)
    return shapely.MultiPolygon([box(west, south, 180, north), box(-180, south, east, north)])


def normalize(geom: shapely.Geometry, crosses: bool | None = None) -> shapely.Geometry:
    """``geom`` within [-180, 180]: cut at the antimeridian if it crosses it, coordinates beyond ±180 wrapped.

    ``crosses``: what the item's bbox says (west > east); ``None`` guesses from edges jumping over 180°."""
    if crosses is None:
        crosses = _jumps_antimeridian(geom)
    if crosses:
        geom = shapely.transform(geom, lambda xy: np.where(xy[:, :1] < 0, xy + [360.0, 0.0], xy))
    west, _, east, _ = geom.bounds
    if west >= -180 and east <= 180:
        return geom
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    parts = []
    for lo, shift in ((-540, 360), (-180, 0), (180, -360)):
        piece = shapely.intersection(geom, box(lo, -90, lo + 360, 90))
        if not piece.is_empty:
            parts.append(affinity.translate(piece, xoff=shift) if shift else piece)
    if not parts:
        return geom
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


def _jumps_antimeridian(geom: shapely.Geometry) -> bool:
    """Any edge spanning more than 180° of longitude, not lying along ±180 itself."""
    if geom.geom_type in ("Point", "MultiPoint"):
        return False
    xy, ring = shapely.get_coordinates(_lines(_array([geom])), return_index=True)
    if len(xy) < 2:
        return False
    a, b, same = xy[:-1, 0], xy[1:, 0], ring[:-1] == ring[1:]
    jump = same & (np.abs(b - a) > 180) & ~((np.abs(a) == 180) & (np.abs(b) == 180))
    return bool(jump.any())


def _array(geoms: list[shapely.Geometry]) -> np.ndarray:
    array = np.empty(len(geoms), dtype=object)
    array[:] = geoms
    return array


def _flat_parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Single parts (points, lines, polygons) of ``geoms`` and the index of the geometry each came from."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    nested = shapely.get_type_id(parts) >= 4  # multi-geometries inside a GeometryCollection
    while nested.any():
        inner, at = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], inner])
        owner = np.concatenate([owner[~nested], owner[nested][at]])
        nested = shapely.get_type_id(parts) >= 4
    return parts, owner


def _lines(geoms: np.ndarray) -> np.ndarray:
    """Every ring of the polygons and every line string in ``geoms``."""
    parts, _ = _flat_parts(geoms)
    kind = shapely.get_type_id(parts)
    return np.concatenate([shapely.get_rings(parts[kind == 3]), parts[(kind == 1) | (kind == 2)]])


# -- view ------------------------------------------------------------------------------------------


def _lon_window(intervals: list[tuple[float, float]]) -> tuple[float, float, float | None]:
    """The shortest lon window covering every interval on the circle: ``(west, east, wrap)``.

    ``east`` exceeds 180 for a window across the antimeridian; then ``wrap`` is a longitude in the gap
    the window leaves out, and what lies west of it is drawn 360° further east. ``wrap`` is ``None``
    when the window does not cross 180°, or when the footprints go almost round the globe (a gap
    under 60°: the plain world map reads better)."""
    merged: list[list[float]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    plain = (merged[0][0], merged[-1][1], None)
    if len(merged) == 1:
        return plain
    gap, i = max((merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1))
    if gap <= merged[0][0] + 360 - merged[-1][1] or gap < 60:  # the gap across ±180 is the largest
        return plain
    return merged[i + 1][0], merged[i][1] + 360, (merged[i][1] + merged[i + 1][0]) / 2


def _view(bounds: list[tuple[float, float, float, float]], width: int, min_height: int,
          max_height: int) -> tuple[View, float | None]:
    """The view of all ``bounds`` (lon/lat boxes within [-180, 180]) with a margin, and its wrap point."""
    if not bounds:
        return View(-180, -90, 180, 90, width, max(min_height, min(max_height, width // 2))), None
    west, east, wrap = _lon_window([(b[0], b[2]) for b in bounds])
    south, north = min(b[1] for b in bounds), max(b[3] for b in bounds)
    lon_span, lat_span = max(east - west, 1e-3), max(north - south, 1e-3)
    pad = 0.08
    west, east = west - lon_span * pad, west + lon_span * (1 + pad)
    south, north = south - lat_span * pad, south + lat_span * (1 + pad)
    lon_span, lat_span = east - west, north - south
    squeeze = max(math.cos(math.radians(max(-80.0, min(80.0, (south + north) / 2)))), 0.2)
    height = round(width * lat_span / (lon_span * squeeze))
    if height > max_height:  # too tall: widen the lon window around its middle
        grow = (lat_span / squeeze * width / max_height - lon_span) / 2
        west, east, height = west - grow, east + grow, max_height
    elif height < min_height:  # too flat: heighten the lat window around its middle
        grow = (lon_span * squeeze * min_height / width - lat_span) / 2
        south, north, height = south - grow, north + grow, min_height
    return View(float(west), float(south), float(east), float(north), width, int(height)), \
        None if wrap is None else float(wrap)


# -- raster ----------------------------------------------------------------------------------------


def _to_pixels(xy: np.ndarray, view: View) -> np.ndarray:
    cols = (xy[:, 0] - view.west) / (view.east - view.west) * view.width
    rows = (view.north - xy[:, 1]) / (view.north - view.south) * view.height
    return np.column_stack([cols, rows])


def _shifted_parts(geoms: list[shapely.Geometry], wrap: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single parts, the footprint each belongs to and the longitude shift it is drawn with.

    A part west of the wrap point is drawn 360° further east, as a whole, so it stays in one piece."""
    parts, owner = _flat_parts(_array(geoms))
    shift = np.zeros(len(parts))
    if wrap is not None and len(parts):
        shift[shapely.bounds(parts)[:, 2] <= wrap] = 360.0
    return parts, owner, shift


def _edges(geoms: list[shapely.Geometry], view: View, wrap: float | None, polygons_only: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``[[x0, y0, x1, y1], ...]`` in pixels and the index of the footprint each belongs to."""
    parts, owner, shift = _shifted_parts(geoms, wrap)
    kind = shapely.get_type_id(parts)
    polygons = np.flatnonzero(kind == 3)
    rings, ring_part = shapely.get_rings(parts[polygons], return_index=True)
    ring_part = polygons[ring_part]
    if not polygons_only:
        lines = np.flatnonzero((kind == 1) | (kind == 2))
        rings, ring_part = np.concatenate([rings, parts[lines]]), np.concatenate([ring_part, lines])
    if not len(rings):
        return np.empty((0, 4)), np.empty(0, dtype=int)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    part = ring_part[ring]
    px = _to_pixels(xy + np.column_stack([shift[part], np.zeros(len(part))]), view)
    same = ring[:-1] == ring[1:]
    if wrap is not None and not polygons_only:  # outlines: not the cuts along 180° inside a view across it
        x0, x1 = xy[:-1, 0], xy[1:, 0]
        same &= ~((np.abs(x0) == 180) & (x0 == x1))
    return np.column_stack([px[:-1][same], px[1:][same]]), owner[part[:-1][same]]


def _coverage(geoms: list[shapely.Geometry], view: View, wrap: float | None) -> np.ndarray:
    """How many footprints cover each pixel center (even-odd rule per footprint: holes stay empty)."""
    width, height = view.width, view.height
    seg, owner = _edges(geoms, view, wrap, polygons_only=True)
    count = np.zeros((height, width), dtype=np.int32)
    if not len(seg):
        return count
    x0, y0, x1, y1 = seg.T
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # rows whose center y = r + 0.5 lies in [lo, hi): half-open, so a vertex is counted once
    first = np.clip(np.ceil(lo - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(hi - 0.5), 0, height).astype(np.int64)
    n = last - first
    keep = n > 0
    if not keep.any():
        return count
    x0, y0, x1, y1, first, n, owner = x0[keep], y0[keep], x1[keep], y1[keep], first[keep], n[keep], owner[keep]
    seg_index = np.repeat(np.arange(len(n)), n)
    rows = first[seg_index] + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    yc = rows + 0.5
    t = (yc - y0[seg_index]) / (y1[seg_index] - y0[seg_index])
    xc = x0[seg_index] + t * (x1[seg_index] - x0[seg_index])
    # sort crossings by (footprint, row, x); consecutive pairs bound the inside spans
    order = np.lexsort((xc, rows, owner[seg_index]))
    rows, xc = rows[order], xc[order]
    starts, ends = rows[0::2], rows[1::2]
    pairs = min(len(starts), len(ends))
    starts, xs0, xs1 = starts[:pairs], xc[0::2][:pairs], xc[1::2][:pairs]
    c0 = np.clip(np.ceil(xs0 - 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(xs1 - 0.5), 0, width).astype(np.int64)
    diff = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(diff, (starts, c0), 1)
    np.add.at(diff, (starts, c1), -1)
    return np.cumsum(diff, axis=1)[:, :width]


def _stroke(image: np.ndarray, seg: np.ndarray, color: int, dash: int = 0) -> None:
    """Draw segments (pixels) into ``image``: points every half pixel along each, optionally dashed."""
    if not len(seg):
        return
    height, width = image.shape
    x0, y0, x1, y1 = seg.T
    n = np.maximum(np.ceil(2 * np.maximum(np.abs(x1 - x0), np.abs(y1 - y0))), 1).astype(np.int64) + 1
    seg_index = np.repeat(np.arange(len(n)), n)
    step = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    t = step / (n[seg_index] - 1).clip(min=1)
    x = x0[seg_index] + t * (x1[seg_index] - x0[seg_index])
    y = y0[seg_index] + t * (y1[seg_index] - y0[seg_index])
    if dash:
        on = (step // (2 * dash)) % 2 == 0
        x, y = x[on], y[on]
    cols, rows = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    image[rows[inside], cols[inside]] = color


def _points(image: np.ndarray, geoms: list[shapely.Geometry], view: View, wrap: float | None, color: int) -> None:
    """A 3 × 3 pixel mark for every point footprint."""
    parts, _, shift = _shifted_parts(geoms, wrap)
    points = shapely.get_type_id(parts) == 0
    if not points.any():
        return
    xy = shapely.get_coordinates(parts[points])
    px = np.floor(_to_pixels(xy + np.column_stack([shift[points], np.zeros(len(xy))]), view)).astype(np.int64)
    height, width = image.shape
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rows, cols = px[:, 1] + dr, px[:, 0] + dc
            inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            image[rows[inside], cols[inside]] = color


def _graticule(image: np.ndarray, view: View) -> None:
    lon_span, lat_span = view.east - view.west, view.north - view.south
    step = next((s for s in GRATICULE_STEPS if max(lon_span, lat_span) / s <= 8), 90)
    for k in range(math.ceil(view.west / step), math.floor(view.east / step) + 1):
        col = int((k * step - view.west) / lon_span * view.width)
        if 0 <= col < view.width:
            image[:, col] = GRATICULE
    for k in range(math.ceil(max(view.south, -90) / step), math.floor(min(view.north, 90) / step) + 1):
        row = int((view.north - k * step) / lat_span * view.height)
        if 0 <= row < view.height:
            image[row, :] = GRATICULE


def _box_segments(bounds: tuple[float, float, float, float], view: View) -> np.ndarray:
    west, south, east, north = bounds
    (c0, r0), (c1, r1) = view.to_pixel(west, north), view.to_pixel(east if east >= west else east + 360, south)
    return np.array([[c0, r0, c1, r0], [c1, r0, c1, r1], [c1, r1, c0, r1], [c0, r1, c0, r0]], dtype=float)


# -- the map ---------------------------------------------------------------------------------------


def render_footprints(footprints: Iterable[Any], *, area: Any = None, width: int = 480, min_height: int = 120,
                      max_height: int = 360, max_geometries: int = 20_000) -> FootprintMap:
    """Draw footprints into a palette PNG.

    Each footprint is a geometry (GeoJSON dict, WKB, WKT, shapely, a bbox), a STAC item (its ``bbox``
    tells whether it crosses the antimeridian), a pair ``(geometry, bbox)`` as :func:`read_footprints`
    yields, or ``None``. ``area`` (a bbox ``[w, s, e, n]`` or a geometry) is outlined too and kept in view.
    """
    found: list[tuple[shapely.Geometry, bool | None]] = []
    missing = 0
    for value in footprints:
        geom, crosses = _footprint(value)
        if geom is None:
            missing += 1
        else:
            found.append((geom, crosses))
    skipped = 0
    if len(found) > max_geometries:
        keep = np.linspace(0, len(found) - 1, max_geometries).round().astype(int)
        skipped = len(found) - max_geometries
        found = [found[i] for i in keep]
    geoms = [normalize(geom, crosses) for geom, crosses in found]
    area_geom, area_crosses = _footprint(area)
    area_geom = normalize(area_geom, area_crosses) if area_geom is not None else None

    bounds = shapely.bounds(_flat_parts(_array(geoms))[0]) if geoms else np.empty((0, 4))
    extent = None
    if len(bounds):
        west, east, _ = _lon_window(list(zip(bounds[:, 0], bounds[:, 2], strict=True)))
        extent = (float(west), float(bounds[:, 1].min()), float(east if east <= 180 else east - 360),
                  float(bounds[:, 3].max()))
    if area_geom is not None:
        bounds = np.concatenate([bounds, shapely.bounds(_flat_parts(_array([area_geom]))[0])])
    view, wrap = _view([tuple(b) for b in bounds], width, min_height, max_height)

    image = np.full((view.height, view.width), BACKGROUND, dtype=np.uint8)
    _graticule(image, view)
    if geoms:
        count = _coverage(geoms, view, wrap)
        for level, color in zip(FILL_LEVELS, FILLS, strict=True):
            image[count >= level] = color
        if len(geoms) > 1:
            _stroke(image, _box_segments(extent, view), EXTENT, dash=3)
        _stroke(image, _edges(geoms, view, wrap, polygons_only=False)[0], OUTLINE)
        _points(image, geoms, view, wrap, OUTLINE)
    if area_geom is not None:
        _stroke(image, _edges([area_geom], view, wrap, polygons_only=False)[0], AREA)
    return FootprintMap(png=encode_png(image, PALETTE), view=view, drawn=len(geoms), missing=missing,
                        skipped=skipped, extent=extent)


def encode_png(indexed: np.ndarray, palette: Iterable[tuple[int, int, int]]) -> bytes:
    """An 8-bit palette PNG of a 2-D array of palette indices."""
    height, width = indexed.shape
    palette = bytes(channel for color in palette for channel in color)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    rows = np.hstack([np.zeros((height, 1), dtype=np.uint8), indexed.astype(np.uint8)])  # filter 0 per row
    return (PNG_SIGNATURE
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", palette)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + chunk(b"IEND", b""))


def footprint_map_of_parquet(parquet_path: str | Path, **kwargs: Any) -> FootprintMap:
    """The footprint map of a STAC GeoParquet file (see :func:`render_footprints`)."""
    return render_footprints(read_footprints(parquet_path), **kwargs)
