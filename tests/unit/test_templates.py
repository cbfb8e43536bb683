"""Destination-key templates: rendered keys, refused fields and keys, collisions refused before any copy."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packager.errors import TemplateError
from packager.locations import Location, parse_href
from packager.lock import LockRow, build_lock
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry
from packager.templates import DEFAULT_TEMPLATE, KeyTemplate, check_relative_key, plan_keys
from tests.unit import make_item, write_object

MiB = 1 << 20


def row(item_id="S2A_1", asset_key="B04", key="tiles/31/U/B04.tif", collection="sentinel-2-l2a") -> LockRow:
    loc = Location("s3", "sentinel-cogs", key)
    return LockRow(collection, item_id, asset_key, loc, loc.href())


def test_default_template_renders():
    assert DEFAULT_TEMPLATE == "{collection}/{item_id}/{asset_key}{ext}"
    assert KeyTemplate().render(row()) == "sentinel-2-l2a/S2A_1/B04.tif"
    assert KeyTemplate().render(row(collection=None)) == "_/S2A_1/B04.tif"
    assert KeyTemplate().render(row(key="a/b/archive.tar.gz")) == "sentinel-2-l2a/S2A_1/B04.tar.gz"
    assert KeyTemplate().render(row(key="a/b/noext")) == "sentinel-2-l2a/S2A_1/B04"


def test_other_fields():
    t = KeyTemplate("{source_container}/{source_key}")
    assert t.render(row()) == "sentinel-cogs/tiles/31/U/B04.tif"
    https = Location("https", "https://cdn.example.com:8443", "p/a.tif?format=tif")
    r = LockRow("c", "i", "a", https, https.href())
    assert KeyTemplate("{source_container}/{filename}").render(r) == "cdn.example.com:8443/a.tif"
    assert KeyTemplate("{item_id}/{filename}").render(row()) == "S2A_1/B04.tif"


def test_unknown_field_is_named():
    with pytest.raises(TemplateError) as info:
        KeyTemplate("{collection}/{itemid}/{asset_key}{extension}")
    message = str(info.value)
    assert "itemid" in message and "extension" in message and "{item_id}" in message


def test_template_without_field_refused():
    with pytest.raises(TemplateError, match="no field"):
        KeyTemplate("constant.tif")


@pytest.mark.parametrize("item_id,fragment", [
    ("..", "'..'"),
    ("a/../../etc", "'..'"),
    ("", "empty"),
    ("x\ny", "control characters"),
    ("x\x7fy", "control characters"),
    ("a\\b", "backslash"),
])
def test_escaping_keys_refused(item_id, fragment):
    with pytest.raises(TemplateError, match=fragment):
        KeyTemplate().render(row(item_id=item_id))


@pytest.mark.parametrize("key", ["/abs/key", "", "a//b", "a/./b", "a/b/", "x" * 1100])
def test_check_relative_key(key):
    with pytest.raises(TemplateError):
        check_relative_key(key)


def test_absolute_key_from_template_refused():
    with pytest.raises(TemplateError, match="absolute"):
        KeyTemplate("{source_key}").render(LockRow("c", "i", "a", parse_href("/data/a.tif"), "/data/a.tif"))


def test_plan_keys_names_both_colliding_rows():
    rows = [row(collection="c1", item_id="same"), row(collection="c2", item_id="same"), row(item_id="other")]
    with pytest.raises(TemplateError) as info:
        list(plan_keys(rows, KeyTemplate("{item_id}/{asset_key}{ext}")))
    message = str(info.value)
    assert "c1/same/B04 and c2/same/B04 -> same/B04.tif" in message
    assert "nothing was copied" in message
    # with {collection} they do not collide, and the plan keeps input order
    planned = list(plan_keys(rows, KeyTemplate()))
    assert [k for _, k in planned] == ["c1/same/B04.tif", "c2/same/B04.tif", "sentinel-2-l2a/other/B04.tif"]


def test_plan_keys_reports_escapes_and_collisions_together():
    rows = [row(item_id=".."), row(collection="c1", item_id="x"), row(collection="c2", item_id="x")]
    with pytest.raises(TemplateError) as info:
        list(plan_keys(rows, KeyTemplate("{item_id}/{asset_key}")))
    message = str(info.value)
    assert "1 key(s) refused" in message and "1 collision(s)" in message


def test_rows_with_the_same_label_still_collide():
    # A stacpkg lock has no collection: one item id in two collections gives two rows '-/i/a' with two sources.
    rows = [row(collection=None, item_id="i", key="c1/a.tif"), row(collection=None, item_id="i", key="c2/a.tif")]
    with pytest.raises(TemplateError, match="collision"):
        list(plan_keys(rows, KeyTemplate()))


def test_colliding_relocation_copies_nothing(tmp_path):
    a = write_object(tmp_path / "src" / "c1" / "a.tif", 100, seed=1)
    b = write_object(tmp_path / "src" / "c2" / "a.tif", 100, seed=2)
    items = [make_item("same-id", {"data": a}, collection="c1"), make_item("same-id", {"data": b}, collection="c2")]
    registry = StoreRegistry()
    build_lock(items, registry, tmp_path / "lock.parquet")
    dest = tmp_path / "dest"
    settings = RelocationSettings(key_template="{item_id}/{asset_key}{ext}", chunk_size=5 * MiB,
                                  memory_limit=64 * MiB)
    with pytest.raises(TemplateError) as info:
        relocate(tmp_path / "lock.parquet", parse_href(f"{dest}/"), registry, tmp_path / "out.parquet",
                 tmp_path / "failures.parquet", settings)
    assert "c1/same-id/data and c2/same-id/data" in str(info.value)
    assert not dest.exists() or not any(dest.rglob("*"))
    assert not (tmp_path / "out.parquet").exists()


def test_stacpkg_lock_with_duplicate_identity_copies_nothing(tmp_path):
    a = write_object(tmp_path / "src" / "c1" / "a.tif", 100, seed=1)
    b = write_object(tmp_path / "src" / "c2" / "a.tif", 100, seed=2)
    table = pa.table({"item_id": ["i", "i"], "asset_key": ["data", "data"], "store_type": ["file", "file"],
                      "store_container": [None, None], "store_endpoint_url": [None, None],
                      "key": [str(a), str(b)], "size_bytes": [100, 100], "etag": [None, None],
                      "last_modified": [None, None]})
    pq.write_table(table, tmp_path / "stacpkg.lock.parquet")
    dest = tmp_path / "dest"
    with pytest.raises(TemplateError, match="-/i/data and -/i/data"):
        relocate(tmp_path / "stacpkg.lock.parquet", parse_href(f"{dest}/"), StoreRegistry(),
                 tmp_path / "out.parquet", tmp_path / "failures.parquet",
                 RelocationSettings(chunk_size=5 * MiB, memory_limit=64 * MiB))
    assert not dest.exists()
