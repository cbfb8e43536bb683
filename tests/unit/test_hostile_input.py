"""Hostile input, the pure cases (issue 9): parsing items, hrefs, key templates, lock files and parquet files.

Every case asserts the user-visible outcome: the error type, that the message names the input (file and
line, item id and asset key, the href without its secret) and how to mend it, or the documented skip and
its count; and that nothing was left behind (no half-written parquet, no temp file). The same cases
through the command line and real servers are in ``tests/integration/test_hostile_input.py``.
"""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packager.errors import HrefError, LockSchemaError, TemplateError
from packager.items import ItemsError, iter_items, ndjson_to_geoparquet, open_items_parquet
from packager.locations import Location, parse_href, safe_href, strip_item_signatures
from packager.lock import LockRow, build_lock, iter_lock, open_lock
from packager.search import _Counts, _write_pages
from packager.stores import StoreRegistry
from packager.templates import KeyTemplate, check_destination, plan_keys
from tests.unit import write_object

SECRET = "Zm9vYmFyU2VjcmV0U2ln"

#: signed hrefs as real services hand them out; the secret must never reach a file, a message or a log
SIGNED = {
    "azure sas (planetary computer)": f"https://acct.blob.core.windows.net/c/a.tif?st=2024-01-01&se=2030-01-01&sp=rl"
                                      f"&sv=2021-06-08&sr=c&skoid=x&sig={SECRET}",
    "aws presigned": f"https://b.s3.amazonaws.com/a.tif?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F"
                     f"&X-Amz-Signature={SECRET}&X-Amz-Security-Token={SECRET}",
    "gcs signed": f"https://storage.googleapis.com/b/a.tif?X-Goog-Algorithm=GOOG4&X-Goog-Signature={SECRET}",
    "bearer token": f"https://data.example.com/a.tif?token={SECRET}",
    "userinfo": f"https://user:{SECRET}@data.example.com/a.tif",
    "swift tempurl": f"swift://cont/a.tif?temp_url_sig={SECRET}&temp_url_expires=1",
}


def item(item_id: Any = "i1", assets: Any = None, collection: Any = "c1", **extra: Any) -> dict:
    out = {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
           "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}, "bbox": [1.0, 2.0, 1.0, 2.0],
           "properties": {"datetime": "2024-01-01T00:00:00Z"}, "links": [],
           "assets": {"data": {"href": "s3://b/a.tif"}} if assets is None else assets}
    out.update(extra)
    return out


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def leftovers(folder: Path) -> list[str]:
    """Temp files an atomic writer would leave behind if it were not atomic."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp")


def all_text(path: Path) -> str:
    """Every value of a parquet file, and its schema metadata, as text (to look for secrets)."""
    table = pq.read_table(path)
    return json.dumps(table.to_pylist(), default=str) + str(table.schema.metadata)


# -- malformed NDJSON and STAC JSON ------------------------------------------------------------------
@pytest.mark.parametrize(("line", "fragments"), [
    ('{"id": "x", broken', ["line 2 is not valid JSON", "fix or delete that line"]),
    ("[1, 2]", ["line 2 is not a STAC item", "fix or delete that line"]),
    ('"just a string"', ["line 2 is not a STAC item"]),
    (item(5), ["line 2: item id 5 is a JSON number", "STAC ids are strings"]),
    (item("x", collection=["c"]), ["line 2: item 'x' has a 'collection' that is not a string"]),
    (item("x", assets=[{"href": "s3://b/a"}]), ["line 2: item 'x' has 'assets' that is a JSON array",
                                                "must be an object"]),
    (item("x", assets={"B01": "s3://b/a.tif"}), ["line 2: item 'x', asset 'B01' is a JSON string",
                                                 "fix the asset or delete it"]),
    (item("x", assets={"B01": {"href": 42}}), ["line 2: item 'x', asset 'B01' has an 'href' that is not a string"]),
    (item("x", links={"rel": "self"}), ["line 2: item 'x' has 'links' that are not a list"]),
    (item("x", geometry=None), ["line 2: item 'x' has no geometry"]),
    (item("x", bbox=[1, 2]), ["line 2: item 'x' needs a 'bbox' of 4 or 6 numbers"]),
])
def test_bad_ndjson_line_names_file_and_line(tmp_path, line, fragments):
    src = write_lines(tmp_path / "in.ndjson", [item("ok"), line, item("after")])
    out = tmp_path / "out" / "items.parquet"
    with pytest.raises(ItemsError) as info:
        ndjson_to_geoparquet(src, out)
    message = str(info.value)
    assert message.startswith(f"{src}: line 2"), message
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message
    assert not out.exists() and leftovers(tmp_path) == []


def test_messages_name_the_input_the_user_gave_not_the_scratch_file(tmp_path):
    scratch = write_lines(tmp_path / "input.ndjson", [item("a"), item("b", geometry=None)])
    with pytest.raises(ItemsError) as info:
        ndjson_to_geoparquet(scratch, tmp_path / "o.parquet", source_name="my-items.json", unit="feature")
    assert str(info.value).startswith("my-items.json: feature 2: item 'b' has no geometry")
    assert str(scratch) not in str(info.value)


def test_blank_lines_and_a_byte_order_mark_are_fine(tmp_path):
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(item("a")).encode() + b"\n\n  \n" + json.dumps(item("b")).encode())
    assert ndjson_to_geoparquet(src, tmp_path / "o.parquet").items == 2


def test_empty_input_is_an_error_naming_it(tmp_path):
    src = write_lines(tmp_path / "in.ndjson", ["", "   "])
    with pytest.raises(ItemsError, match=f"{src} holds no items"):
        ndjson_to_geoparquet(src, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


# -- items without assets: a documented skip ---------------------------------------------------------
def test_items_without_assets_are_kept_counted_and_lock_nothing(tmp_path):
    data = write_object(tmp_path / "src" / "a.tif", 10)
    items = [item("a", assets={"data": {"href": str(data)}}), item("empty", assets={}), item("none", assets=None)]
    items[2].pop("assets")
    summary = ndjson_to_geoparquet(write_lines(tmp_path / "in.ndjson", items), tmp_path / "items.parquet")
    assert summary.items == 3 and summary.assets == 1
    assert summary.items_without_assets == 2 and summary.items_without_assets_sample == ["empty", "none"]
    back = list(iter_items(tmp_path / "items.parquet"))
    assert [it["id"] for it in back] == ["a", "empty", "none"]
    lock = build_lock(back, StoreRegistry(), tmp_path / "lock.parquet")
    assert (lock.items, lock.items_without_assets, lock.rows, lock.failures) == (3, 2, 1, [])


def test_only_items_without_assets_give_an_empty_lock(tmp_path):
    summary = ndjson_to_geoparquet(write_lines(tmp_path / "in.ndjson", [item("e", assets={})]), tmp_path / "i.parquet")
    assert summary.items_without_assets == 1 and summary.asset_keys == []
    lock = build_lock(iter_items(tmp_path / "i.parquet"), StoreRegistry(), tmp_path / "lock.parquet")
    assert lock.rows == 0 and lock.items_without_assets == 1
    assert pq.read_table(tmp_path / "lock.parquet").num_rows == 0


# -- duplicates ----------------------------------------------------------------------------------------
def test_exact_repeat_dropped_and_counted_different_content_refused(tmp_path):
    a, b = item("a"), item("b")
    same = write_lines(tmp_path / "same.ndjson", [a, b, a, a])
    summary = ndjson_to_geoparquet(same, tmp_path / "o.parquet")
    assert summary.items == 2 and summary.duplicates_dropped == 2
    assert [it["id"] for it in iter_items(tmp_path / "o.parquet")] == ["a", "b"]

    changed = dict(a, properties={"datetime": "2025-01-01T00:00:00Z"})
    other = write_lines(tmp_path / "other.ndjson", [a, b, changed])
    with pytest.raises(ItemsError) as info:
        ndjson_to_geoparquet(other, tmp_path / "o2.parquet")
    message = str(info.value)
    assert message.startswith(f"{other}: line 3: item 'a' of collection 'c1' is also on line 1")
    assert "delete the stale one or give it another id" in message
    assert not (tmp_path / "o2.parquet").exists()
    # the same id in two collections is two items
    two = write_lines(tmp_path / "two.ndjson", [a, dict(a, collection="c2")])
    assert ndjson_to_geoparquet(two, tmp_path / "o3.parquet").items == 2


def test_search_drops_items_an_api_returns_again_on_a_later_page():
    page1 = {"features": [item("a"), item("b")], "numberMatched": 3}
    page2 = {"features": [item("b"), item("c"), item("a", collection="c2")]}  # b again: data changed while paging
    out, counts = io.BytesIO(), _Counts()
    _write_pages(iter([page1, page2]), out, counts)
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(i["collection"], i["id"]) for i in written] == [("c1", "a"), ("c1", "b"), ("c1", "c"), ("c2", "a")]
    assert counts.duplicates == 1 and counts.duplicate_ids == ["c1/b"] and counts.returned == 4


# -- signed hrefs: never in a parquet file, a report or a message -------------------------------------
@pytest.mark.parametrize("name", list(SIGNED))
def test_signed_hrefs_are_stripped_everywhere(tmp_path, name):
    href = SIGNED[name]
    it = item("s", assets={"data": {"href": href, "alternate": {"mirror": {"href": href}}}},
              links=[{"rel": "self", "href": href}])
    summary = ndjson_to_geoparquet(write_lines(tmp_path / "in.ndjson", [it]), tmp_path / "items.parquet")
    assert summary.signed_hrefs_stripped == 3
    assert SECRET not in all_text(tmp_path / "items.parquet")
    back = next(iter_items(tmp_path / "items.parquet"))
    assert back["assets"]["data"]["href"] == safe_href(href) == back["links"][0]["href"]
    assert back["assets"]["data"]["alternate"]["mirror"]["href"] == safe_href(href)


def test_signed_hrefs_never_reach_the_lock_or_its_failures(tmp_path):
    data = write_object(tmp_path / "src" / "a.tif", 5)
    it = item("s", assets={"ok": {"href": f"file://{data}?se=2030-01-01&sp=r&sig={SECRET}"},
                           "bad": {"href": f"ftp://host/a.tif?X-Amz-Signature={SECRET}"}})
    summary = build_lock([it], StoreRegistry(), tmp_path / "lock.parquet")
    assert summary.rows == 1 and [f.href for f in summary.failures] == ["ftp://host/a.tif"]
    [row] = list(iter_lock(tmp_path / "lock.parquet"))
    assert row.href == f"file://{data}" and row.size == 5
    assert SECRET not in all_text(tmp_path / "lock.parquet")
    assert SECRET not in json.dumps([f.as_record() for f in summary.failures])


def test_strip_item_signatures_keeps_harmless_parameters():
    it = item("s", assets={"data": {"href": f"https://h/a.tif?format=tif&sig={SECRET}"}, "plain": {"href": "s3://b/k"}})
    assert strip_item_signatures(it) == 1
    assert it["assets"]["data"]["href"] == "https://h/a.tif?format=tif"
    assert it["assets"]["plain"]["href"] == "s3://b/k"


def test_an_href_that_is_not_even_a_url_leaks_nothing():
    broken = f"https://[broken/a.tif?sig={SECRET}"
    assert SECRET not in safe_href(broken)
    with pytest.raises(HrefError) as info:
        parse_href(broken)
    assert SECRET not in str(info.value) and "not a valid URL" in str(info.value)


# -- unknown schemes, relative hrefs, broken hrefs: lock failure rows ----------------------------------
def test_bad_hrefs_are_failure_rows_naming_item_asset_and_href(tmp_path):
    good = write_object(tmp_path / "src" / "a.tif", 5)
    it = item("odd", assets={
        "ftp": {"href": f"ftp://host/a.tif?X-Amz-Signature={SECRET}"},
        "foo": {"href": "foo:bar"},
        "mailto": {"href": "mailto:someone@example.com"},
        "relative": {"href": "./a.tif"},
        "newline": {"href": f"{good}\nrm -rf"},
        "broken": {"href": "http://[::1/a.tif"},
        "empty": {"href": ""},
        "ok": {"href": str(good)},
    })
    summary = build_lock([it], StoreRegistry(), tmp_path / "lock.parquet")
    failures = {f.asset_key: f for f in summary.failures}
    assert summary.rows == 1 and set(failures) == {"ftp", "foo", "mailto", "relative", "newline", "broken", "empty"}
    for key in ("ftp", "foo", "mailto"):
        f = failures[key]
        assert (f.item_id, f.collection, f.stage, f.error_code) == ("odd", "c1", "lock", "bad_href")
        assert "unsupported scheme" in f.error and "file, s3, gs, az (abfs), http(s), swift and webdav(s)" in f.error
        assert "rewrite rule" in f.error
    assert failures["ftp"].href == "ftp://host/a.tif" and "'ftp://host/a.tif'" in failures["ftp"].error
    assert failures["foo"].href == "foo:bar" and "'foo'" in failures["foo"].error
    assert "has no base" in failures["relative"].error and "'self' link" in failures["relative"].error
    assert "control characters" in failures["newline"].error
    assert "not a valid URL" in failures["broken"].error
    assert "empty href" in failures["empty"].error
    assert SECRET not in json.dumps([f.as_record() for f in summary.failures])
    assert [r.asset_key for r in iter_lock(tmp_path / "lock.parquet")] == ["ok"]


def test_relative_hrefs_resolve_against_the_self_link(tmp_path):
    write_object(tmp_path / "cat" / "c1" / "a.tif", 7)
    write_object(tmp_path / "cat" / "shared" / "b.tif", 3)
    self_link = {"rel": "self", "href": f"file://{tmp_path}/cat/c1/item.json"}
    items = [item("r", assets={"a": {"href": "./a.tif"}, "b": {"href": "../shared/b.tif"}}, links=[self_link]),
             item("rel-self", assets={"a": {"href": "./a.tif"}}, links=[{"rel": "self", "href": "./item.json"}])]
    summary = build_lock(items, StoreRegistry(), tmp_path / "lock.parquet")
    rows = {r.asset_key: r for r in iter_lock(tmp_path / "lock.parquet")}
    assert rows["a"].location.key == f"{tmp_path}/cat/c1/a.tif" and rows["a"].size == 7
    assert rows["b"].location.key == f"{tmp_path}/cat/shared/b.tif" and rows["b"].size == 3
    [failure] = summary.failures
    assert failure.item_id == "rel-self" and "self' link './item.json' is relative too" in failure.error


@pytest.mark.parametrize(("base", "expected"), [
    ("s3://bucket/items/x.json", "s3://bucket/data/a.tif"),  # urljoin leaves these relative: a bug fixed here
    ("gs://bucket/items/x.json", "gs://bucket/data/a.tif"),
    ("swift://container/items/x.json", "swift://container/data/a.tif"),
    ("webdavs://dav.example.com/items/x.json", "webdavs://dav.example.com/data/a.tif"),
    (f"https://api.example.com/items/x.json?token={SECRET}", "https://api.example.com/data/a.tif"),
])
def test_relative_hrefs_resolve_against_self_links_of_every_scheme(base, expected):
    assert parse_href("../data/a.tif", base=base).href() == expected
    assert StoreRegistry().resolve("../data/a.tif", base=base).href() == expected


def test_assets_that_are_not_objects_are_failure_rows_not_crashes(tmp_path):
    # items straight from Python (the Dagster path reads items.parquet, which refuses these up front)
    it = item("weird", assets={"str": "s3://b/a.tif", "num": {"href": 7}})
    summary = build_lock([it], StoreRegistry(), tmp_path / "lock.parquet")
    errors = {f.asset_key: f.error for f in summary.failures}
    assert "asset c1/weird/str: asset is a str, not an object" in errors["str"]
    assert "its 'href' is not a string: 7" in errors["num"]


# -- hostile names and templates: refused before any byte moves -----------------------------------------
def lock_row(item_id: str, asset_key: str = "data", collection: str | None = "c1", key: str = "src/a.tif") -> LockRow:
    loc = Location("s3", "bucket", key)
    return LockRow(collection, item_id, asset_key, loc, loc.href())


NFC, NFD = unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")


@pytest.mark.parametrize(("item_id", "asset_key", "fragment"), [
    ("..", "data", "'..' path segment"),
    ("a/../../../etc", "data", "'..' path segment"),
    ("x", "../../escape", "'..' path segment"),
    ("a\\b", "data", "backslash"),
    ("x", "a\\..\\b", "backslash"),
    ("bell\x07", "data", "control characters"),
    ("x", "tab\tkey", "control characters"),
    ("nul\x00", "data", "control characters"),
    ("l" * 300, "data", "path segment of 300 bytes"),
    ("é" * 130, "data", "path segment of 260 bytes"),  # 130 characters, 260 bytes in UTF-8
    ("/".join(["d" * 200] * 6), "data", "over the limit of 1024 bytes"),
])
def test_hostile_names_refused_naming_asset_and_limit(item_id, asset_key, fragment):
    with pytest.raises(TemplateError) as info:
        list(plan_keys([lock_row("fine"), lock_row(item_id, asset_key)], KeyTemplate()))
    message = str(info.value)
    assert fragment in message and "nothing was copied" in message
    assert "change the template (--key-template / relocation.key_template) or the offending id" in message
    assert len(message) < 2000  # a 1,000-character id is shown cut short, with its length


@pytest.mark.parametrize("item_id", ["a/b", "日本語", NFD, "sp ace", "%2e%2e", "a%2Fb", "x#y?z", "-" * 255])
def test_odd_but_safe_names_stay_inside_the_target(item_id):
    [(_, key)] = list(plan_keys([lock_row(item_id)], KeyTemplate()))
    assert key == f"c1/{item_id}/data.tif" and not key.startswith("/") and ".." not in key.split("/")


def test_nfc_and_nfd_spellings_of_one_name_collide():
    with pytest.raises(TemplateError) as info:
        list(plan_keys([lock_row(NFC), lock_row(NFD)], KeyTemplate()))
    message = str(info.value)
    assert "1 collision(s)" in message and "NFC vs NFD" in message and ascii(f"c1/{NFD}/data.tif") in message


@pytest.mark.parametrize(("template", "fragment"), [
    ("../{item_id}", "'..' path segment"),
    ("{collection}/../../{item_id}", "'..' path segment"),
    ("/abs/{item_id}", "empty or absolute"),
    ("a//{item_id}", "empty, '.' or '..'"),
    ("{item_id", "malformed"),
    ("{0}/{item_id}", "unknown field"),
    ("{item_id.__class__}", "unknown field"),
])
def test_templates_that_escape_are_refused_up_front(template, fragment):
    with pytest.raises(TemplateError) as info:
        KeyTemplate(template)
    assert fragment in str(info.value) and repr(template) in str(info.value)


def test_whole_key_with_the_target_prefix_is_checked():
    key = "/".join(["k" * 200] * 5)  # 1004 bytes: fine on its own
    list(plan_keys([lock_row("i", key=key)], KeyTemplate("{source_key}")))
    with pytest.raises(TemplateError, match="1031 bytes with the target prefix, over the object key limit of 1024"):
        list(plan_keys([lock_row("i", key=key)], KeyTemplate("{source_key}"),
                       target=parse_href("s3://mirror/target-prefix/deeper/still")))
    check_destination(parse_href("/mnt/mirror"), key)  # a local path may be longer (PATH_MAX)


# -- lock files with a wrong schema -----------------------------------------------------------------
def write_table(path: Path, columns: dict[str, list], schema: pa.Schema | None = None) -> Path:
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


V1 = {"item_id": ["i"], "asset_key": ["a"], "store_type": ["file"], "store_container": [None],
      "store_endpoint_url": [None], "key": ["/data/a.tif"], "size_bytes": [3], "etag": [None],
      "last_modified": [None]}


@pytest.mark.parametrize(("columns", "fragments"), [
    ({"x": [1], "y": ["a"]}, ["is not an asset lock: missing column(s) item_id, asset_key, store_type, key",
                              "its columns: x, y"]),
    ({k: v for k, v in V1.items() if k != "key"}, ["missing column(s) key"]),
    ({**V1, "item_id": [1]}, ["column item_id is int64, expected string"]),
    ({**V1, "size_bytes": ["big"]}, ["column size_bytes is string, expected int64"]),
    ({**V1, "size_bytes": [1.5], "etag": [3]}, ["size_bytes is double", "etag is int64"]),
])
def test_lock_with_wrong_schema_names_file_and_columns(tmp_path, columns, fragments):
    path = write_table(tmp_path / "assets.lock.parquet", columns)
    with pytest.raises(LockSchemaError) as info:
        open_lock(path)
    message = str(info.value)
    assert str(path) in message and "re-run the lock" in message
    for fragment in fragments:
        assert fragment in message, message


def test_lock_rows_that_cannot_be_used_name_the_row(tmp_path):
    bad_type = write_table(tmp_path / "bad-type.parquet", {**V1, "item_id": ["i", "j"], "asset_key": ["a", "b"],
                                                            "store_type": ["file", "gopher"], "key": ["/a", "/b"],
                                                            **{k: [None, None] for k in ("store_container",
                                                               "store_endpoint_url", "etag", "last_modified")},
                                                            "size_bytes": [1, 2]})
    with pytest.raises(LockSchemaError, match=r"bad-type.parquet: row 2 \(-/j/b\): lock row has the unsupported "
                                              r"store_type 'gopher'.*re-run the lock"):
        list(iter_lock(bad_type))
    no_id = write_table(tmp_path / "no-id.parquet", {**V1, "item_id": [None]}, schema=pa.schema(
        [pa.field(k, pa.int64() if k == "size_bytes" else pa.string()) for k in V1]))
    with pytest.raises(LockSchemaError, match=r"no-id.parquet: row 1 .*item_id is None; every lock row needs one"):
        list(iter_lock(no_id))


def test_a_stacpkg_v1_lock_is_valid_input(tmp_path):
    schema = pa.schema([pa.field(k, pa.int64() if k == "size_bytes" else pa.string(),
                                 nullable=k not in ("item_id", "asset_key")) for k in V1],
                       metadata={b"stacpkg:schema-kind": b"asset-lock", b"stacpkg:schema-version": b"v1"})
    path = write_table(tmp_path / "stacpkg.lock.parquet", V1, schema=schema)
    [row] = list(iter_lock(path))
    assert (row.collection, row.item_id, row.asset_key, row.location.key, row.size) == (None, "i", "a", "/data/a.tif", 3)


# -- truncated parquet ---------------------------------------------------------------------------------
@pytest.fixture
def package_files(tmp_path):
    data = write_object(tmp_path / "src" / "a.tif", 100)
    ndjson = write_lines(tmp_path / "in.ndjson", [item(f"i{k}", assets={"data": {"href": str(data)}})
                                                  for k in range(50)])
    ndjson_to_geoparquet(ndjson, tmp_path / "items.parquet")
    build_lock(iter_items(tmp_path / "items.parquet"), StoreRegistry(), tmp_path / "lock.parquet")
    return tmp_path


def cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut-" + path.name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.mark.parametrize("keep", [0.5, 0.98, 0.0])
def test_truncated_lock_is_a_clear_error(package_files, keep):
    truncated = cut(package_files / "lock.parquet", keep)
    with pytest.raises(LockSchemaError) as info:
        list(iter_lock(truncated))
    message = str(info.value)
    assert str(truncated) in message and "re-run the lock" in message
    assert ("is empty" if keep == 0 else "is not a complete parquet file") in message


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_items_parquet_is_a_clear_error(package_files, keep):
    truncated = cut(package_files / "items.parquet", keep)
    with pytest.raises(ItemsError) as info:
        list(iter_items(truncated))
    message = str(info.value)
    assert str(truncated) in message and "is not a complete parquet file" in message and "re-create it" in message


def test_a_lock_or_random_file_is_not_items(package_files):
    with pytest.raises(ItemsError, match=r"lock.parquet is not STAC GeoParquet: it has no id, geometry column"):
        open_items_parquet(package_files / "lock.parquet")
    ndjson = package_files / "in.ndjson"
    with pytest.raises(ItemsError, match="in.ndjson is not a complete parquet file"):
        list(iter_items(ndjson))
    with pytest.raises(LockSchemaError, match="items.parquet is not an asset lock: missing column"):
        open_lock(package_files / "items.parquet")
