"""Enrichment: relocated assets gain an alternate, file:size and file:checksum; nothing else changes."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

from packager.enrich import ALTERNATE_EXTENSION, FILE_EXTENSION, enrich_items, relocated_index
from packager.locations import parse_href
from packager.lock import AssetFilter, build_lock, iter_lock
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry
from tests.unit import make_item, make_items, write_object

MiB = 1 << 20


def _relocated(tmp_path, items, assets=None):
    registry = StoreRegistry()
    build_lock(items, registry, tmp_path / "lock.parquet", assets=assets)
    summary = relocate(tmp_path / "lock.parquet", parse_href(f"{tmp_path}/dest/"), registry,
                       tmp_path / "out.parquet", tmp_path / "f.parquet",
                       RelocationSettings(chunk_size=5 * MiB, memory_limit=64 * MiB))
    assert summary.failures == []
    return relocated_index(tmp_path / "out.parquet")


def test_relocated_assets_gain_alternate_size_checksum(tmp_path):
    items = make_items(tmp_path, 2)
    index = _relocated(tmp_path, copy.deepcopy(items))
    out = list(enrich_items(copy.deepcopy(items), index, alternate_name="mirror", alternate_title="Our copy"))
    assert [i["id"] for i in out] == ["item-000", "item-001"]
    for before, after in zip(items, out, strict=True):
        assert after["stac_extensions"] == [ALTERNATE_EXTENSION, FILE_EXTENSION]
        for key, asset in after["assets"].items():
            copy_path = tmp_path / "dest" / "c1" / before["id"] / (key + Path(before["assets"][key]["href"]).suffix)
            assert asset["href"] == before["assets"][key]["href"]  # the primary href is not touched
            assert asset["alternate"] == {"mirror": {"href": f"file://{copy_path}", "title": "Our copy"}}
            assert asset["file:size"] == copy_path.stat().st_size
            assert asset["file:checksum"] == "1220" + hashlib.sha256(copy_path.read_bytes()).hexdigest()
            assert asset["type"] == "application/octet-stream"


def test_other_assets_and_items_untouched(tmp_path):
    items = make_items(tmp_path, 2, keys=("data", "thumb"))
    stranger = make_item("not-relocated", {"data": tmp_path / "nowhere.tif"})
    index = _relocated(tmp_path, copy.deepcopy(items), assets=AssetFilter(include=["data"]))
    originals = copy.deepcopy([*items, stranger])
    out = list(enrich_items(copy.deepcopy([*items, stranger]), index, alternate_name="mirror"))
    assert out[2] == originals[2]  # an item with nothing relocated is exactly as published
    for before, after in zip(originals[:2], out[:2], strict=True):
        assert after["assets"]["thumb"] == before["assets"]["thumb"]  # no null fields added
        assert "alternate" in after["assets"]["data"] and "title" not in after["assets"]["data"]["alternate"]["mirror"]


def test_extensions_added_once_and_existing_alternates_kept(tmp_path):
    src = write_object(tmp_path / "a.tif", 64)
    item = make_item("i1", {"data": src})
    item["stac_extensions"] = [FILE_EXTENSION, "https://stac-extensions.github.io/eo/v1.1.0/schema.json"]
    item["assets"]["data"]["alternate"] = {"s3": {"href": "s3://public/a.tif"}}
    item["assets"]["data"]["file:checksum"] = "1220" + hashlib.sha256(src.read_bytes()).hexdigest()
    index = _relocated(tmp_path, [copy.deepcopy(item)])
    (out,) = enrich_items([copy.deepcopy(item)], index, alternate_name="mirror")
    assert out["stac_extensions"] == [FILE_EXTENSION, "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                      ALTERNATE_EXTENSION]
    assert set(out["assets"]["data"]["alternate"]) == {"s3", "mirror"}
    assert out["assets"]["data"]["alternate"]["s3"] == {"href": "s3://public/a.tif"}
    (again,) = enrich_items([out], index, alternate_name="mirror")  # enriching twice changes nothing
    assert again["stac_extensions"].count(ALTERNATE_EXTENSION) == 1
    assert set(again["assets"]["data"]["alternate"]) == {"s3", "mirror"}


def test_matched_by_collection(tmp_path):
    a = write_object(tmp_path / "c1.tif", 10, seed=1)
    b = write_object(tmp_path / "c2.tif", 20, seed=2)
    items = [make_item("same", {"data": a}, collection="c1"), make_item("same", {"data": b}, collection="c2")]
    index = _relocated(tmp_path, copy.deepcopy(items))
    out = list(enrich_items(copy.deepcopy(items), index, alternate_name="m"))
    assert [i["assets"]["data"]["file:size"] for i in out] == [10, 20]
    assert out[0]["assets"]["data"]["alternate"]["m"]["href"].endswith("/dest/c1/same/data.tif")
    assert out[1]["assets"]["data"]["alternate"]["m"]["href"].endswith("/dest/c2/same/data.tif")
    assert {row.identity for row in iter_lock(tmp_path / "out.parquet")} == set(index)
