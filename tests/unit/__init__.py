"""Unit tests: the engine against local files under ``tmp_path`` only (no servers, no mocks)."""

from __future__ import annotations

import random
from pathlib import Path


def write_object(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` deterministic pseudo-random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def make_item(item_id: str, assets: dict[str, Path | str], collection: str | None = "c1",
              **extra_assets_fields) -> dict:
    """A minimal STAC item whose assets point at ``assets`` (paths become plain absolute hrefs)."""
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": item_id,
        "geometry": None,
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "links": [],
        "assets": {
            key: {"href": str(href), "type": "application/octet-stream", **extra_assets_fields}
            for key, href in assets.items()
        },
    }
    if collection is not None:
        item["collection"] = collection
    return item


def make_items(root: Path, n_items: int, keys: tuple[str, ...] = ("data", "thumb"), size: int = 1000,
               collection: str = "c1") -> list[dict]:
    """``n_items`` items with one file per asset key under ``root/src``, sizes varying with the index."""
    items = []
    for i in range(n_items):
        paths = {}
        for j, key in enumerate(keys):
            ext = ".tif" if key == "data" else ".png"
            paths[key] = write_object(root / "src" / collection / f"item-{i:03d}-{key}{ext}", size + i + j, seed=i * 7 + j)
        items.append(make_item(f"item-{i:03d}", paths, collection=collection))
    return items
