"""The demo's real items and their stand-in bytes (``demo/data``, ``demo/standins.py``).

The demo runs offline: every asset it packages must resolve, through the demo's rewrite rules and
the engine's own href parsing, to a stand-in file written by ``write_standins``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from demo import standins
from demo.standins import (
    COLLECTIONS_DIR,
    DEMO_EXCLUDED_ASSET_KEYS,
    ITEMS_FILE,
    asset_hrefs,
    rewrite_rules_for,
    standin_path,
    standin_size,
    write_standins,
)
from packager.locations import parse_href
from packager.rewrite import RewriteRule, RewriteRules

EXPECTED_COUNTS = {"sentinel-2-l2a": 30, "landsat-c2-l2": 6, "naip": 6, "sentinel-1-grd": 3}
PUBLIC_LINK_RELS = {"self", "root", "parent", "collection"}


def _items() -> list[dict]:
    return list(standins.iter_items(ITEMS_FILE))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, standins.StandinSummary]:
    # a space and a '%' in the folder: the file:// replacement must be percent-encoded
    source = tmp_path_factory.mktemp("demo") / "source dir %41"
    return source, write_standins(ITEMS_FILE, source)


# -- the data ------------------------------------------------------------------------------------


def test_demo_items_are_the_selected_real_items() -> None:
    items = _items()
    assert ITEMS_FILE.stat().st_size < 1_000_000
    assert Counter(it["collection"] for it in items) == EXPECTED_COUNTS
    assert len({it["id"] for it in items}) == len(items)
    for it in items:
        rels = {link["rel"] for link in it.get("links", [])}
        assert not rels & PUBLIC_LINK_RELS, f"{it['id']} still links to its public catalog: {rels}"
        for asset in it["assets"].values():  # hrefs as published, never pointing at the stand-ins
            assert asset["href"].split("://")[0] in ("https", "s3"), asset["href"]
    # the published hosts the rewrite rules exist for
    hosts = {href.split("/")[2] for _, _, _, href in asset_hrefs(ITEMS_FILE)}
    assert {"sentinel2l2a01.blob.core.windows.net", "landsateuwest.blob.core.windows.net",
            "sentinel1euwest.blob.core.windows.net", "naipeuwest.blob.core.windows.net"} <= hosts  # fmt: skip


def test_demo_collection_documents() -> None:
    docs = sorted(COLLECTIONS_DIR.glob("*.json"))
    assert [d.stem for d in docs] == ["naip", "sentinel-1-grd", "sentinel-2-l2a"]
    for d in docs:
        doc = json.loads(d.read_text())
        assert doc["type"] == "Collection" and doc["id"] == d.stem
        assert doc["links"] == []


def test_excluded_keys_are_api_endpoints_and_the_rest_are_files() -> None:
    excluded = [(k, h) for _, _, k, h in asset_hrefs(ITEMS_FILE) if k in DEMO_EXCLUDED_ASSET_KEYS]
    assert len(excluded) == 86  # rendered_preview + tilejson on the 43 Planetary Computer items
    assert all(h.startswith("https://planetarycomputer.microsoft.com/api/data/v1/") for _, h in excluded)
    kept = [h for _, _, k, h in asset_hrefs(ITEMS_FILE) if k not in DEMO_EXCLUDED_ASSET_KEYS]
    assert len(kept) == 857
    assert not [h for h in kept if "?" in h or "planetarycomputer.microsoft.com" in h]


# -- stand-ins -----------------------------------------------------------------------------------


def test_standins_written_with_summary(written: tuple[Path, standins.StandinSummary]) -> None:
    _, s = written
    assert (s.items, s.assets, s.excluded, s.files) == (45, 943, 86, 857)
    assert s.written == s.files and s.skipped == 0
    assert s.bytes_written == s.bytes_total
    assert 857 * 4096 <= s.bytes_total <= 857 * 65536
    assert s.schemes == {"https": 816, "s3": 41}
    assert len(s.non_https) == 41 and all("s3://eodata/" in line for line in s.non_https)
    assert "s3://eodata" in s.hosts and "sentinel2l2a01.blob.core.windows.net" in s.hosts


def test_every_kept_asset_resolves_to_its_standin_through_the_rewrite_rules(
    written: tuple[Path, standins.StandinSummary],
) -> None:
    source, summary = written
    rules = RewriteRules(rules=[RewriteRule(**r) for r in rewrite_rules_for(summary.hosts, source)])
    checked = 0
    for collection, item_id, key, href in asset_hrefs(ITEMS_FILE):
        if key in DEMO_EXCLUDED_ASSET_KEYS:
            continue
        rewritten = rules.rewrite(href, collection)
        assert rewritten != href, f"no rule for {href}"
        loc = parse_href(rewritten)
        assert loc.kind == "file", (href, rewritten)
        path = Path(loc.key)
        assert path.is_file(), f"{collection}/{item_id}/{key}: {href} -> {rewritten} -> {path} missing"
        assert path == standin_path(href, source.resolve())
        size = path.stat().st_size
        assert size == standin_size(href) and 4096 <= size <= 65536
        checked += 1
    assert checked == 857


def test_standins_are_deterministic_and_idempotent(
    written: tuple[Path, standins.StandinSummary], tmp_path: Path
) -> None:
    source, first = written
    before = {p: p.stat().st_mtime_ns for p in source.rglob("*") if p.is_file()}
    again = write_standins(ITEMS_FILE, source)
    assert (again.written, again.skipped, again.bytes_written) == (0, first.files, 0)
    assert again.bytes_total == first.bytes_total and again.hosts == first.hosts
    assert {p: p.stat().st_mtime_ns for p in source.rglob("*") if p.is_file()} == before

    other = tmp_path / "other"
    write_standins(ITEMS_FILE, other)
    assert _tree_digest(other) == _tree_digest(source)  # same bytes in a fresh folder


def test_a_truncated_standin_is_rewritten(tmp_path: Path) -> None:
    href = "https://example.blob.core.windows.net/c/a%20b/x.tif"
    items = tmp_path / "items.ndjson"
    items.write_text(json.dumps({"id": "i", "collection": "c", "assets": {"data": {"href": href}}}) + "\n")
    source = tmp_path / "src"
    write_standins(items, source)
    path = source / "example.blob.core.windows.net" / "c" / "a b" / "x.tif"
    good = path.read_bytes()
    path.write_bytes(good[:100])
    s = write_standins(items, source)
    assert (s.written, s.skipped) == (1, 0)
    assert path.read_bytes() == good


def test_non_https_sources_map_under_their_scheme(tmp_path: Path) -> None:
    rules = rewrite_rules_for(["s3://eodata", "example.com", "http://plain.example"], tmp_path)
    base = tmp_path.resolve().as_uri()
    assert rules == [
        {"prefix": "s3://eodata/", "replacement": f"{base}/s3/eodata/"},
        {"prefix": "https://example.com/", "replacement": f"{base}/example.com/"},
        {"prefix": "http://plain.example/", "replacement": f"{base}/http/plain.example/"},
    ]
    assert standin_path("s3://eodata/a/b.jp2", tmp_path) == tmp_path / "s3" / "eodata" / "a" / "b.jp2"


@pytest.mark.parametrize(
    "href",
    [
        "https://host.example/a/../../etc/passwd",
        "https://host.example/a/%2e%2e/%2E%2E/x",
        "https://host.example/./x",
        "https://../x",
        "relative/path.tif",
        "https://host.example/",
    ],
)
def test_unsafe_or_unmappable_hrefs_are_refused(href: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        standin_path(href, tmp_path)
    items = tmp_path / "items.ndjson"
    items.write_text(json.dumps({"id": "i", "collection": "c", "assets": {"data": {"href": href}}}) + "\n")
    with pytest.raises(ValueError):
        write_standins(items, tmp_path / "src")
    assert not (tmp_path / "src").exists()  # refused before anything was written
