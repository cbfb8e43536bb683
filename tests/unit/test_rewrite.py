"""Rewrite rules: first match wins, collection limits, signed hrefs untouched, bucket overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from packager.locations import Location
from packager.lock import AssetFilter, build_lock, iter_lock
from packager.rewrite import BucketOverride, RewriteRule, RewriteRules
from packager.stores import StoreRegistry
from tests.unit import make_item, write_object

CDN = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/"


def rules() -> RewriteRules:
    return RewriteRules.of(
        [
            {"prefix": CDN + "sentinel-s2-l2a-cogs/", "replacement": "s3://sentinel-cogs/sentinel-s2-l2a-cogs/",
             "collections": ["sentinel-2-l2a"]},
            {"prefix": CDN, "replacement": "file:///mirror/sentinel-cogs/"},
            {"prefix": CDN, "replacement": "s3://never-used/"},
        ],
        [{"bucket": "sentinel-cogs", "region": "us-west-2", "skip_signature": True},
         {"bucket": "rp", "requester_pays": True, "endpoint": "http://127.0.0.1:9000"}],
    )


def test_first_match_wins_and_collections_limit():
    href = CDN + "sentinel-s2-l2a-cogs/31/U/a.tif"
    r = rules()
    assert r.rewrite(href, "sentinel-2-l2a") == "s3://sentinel-cogs/sentinel-s2-l2a-cogs/31/U/a.tif"
    # the collection-limited rule does not apply to other collections (or none): the next rule does
    assert r.rewrite(href, "landsat") == "file:///mirror/sentinel-cogs/sentinel-s2-l2a-cogs/31/U/a.tif"
    assert r.rewrite(href) == "file:///mirror/sentinel-cogs/sentinel-s2-l2a-cogs/31/U/a.tif"


def test_no_match_leaves_href_unchanged():
    assert rules().rewrite("https://other.example.com/a.tif", "sentinel-2-l2a") == "https://other.example.com/a.tif"
    assert RewriteRules().rewrite("s3://b/k") == "s3://b/k"


def test_prefix_must_match_at_the_start():
    r = RewriteRules.of([RewriteRule(prefix="s3://b/", replacement="file:///m/")])
    assert r.rewrite("xs3://b/k") == "xs3://b/k"
    assert r.rewrite("s3://b/k") == "file:///m/k"


@pytest.mark.parametrize("query", ["X-Amz-Signature=abc&X-Amz-Credential=AK", "sv=2022&sig=abc", "temp_url_sig=x"])
def test_signed_hrefs_are_not_rewritten(query):
    href = CDN + f"sentinel-s2-l2a-cogs/a.tif?{query}"
    assert rules().rewrite(href, "sentinel-2-l2a") == href
    # a harmless query does not block the rule
    assert rules().rewrite(CDN + "x/a.tif?format=tif").startswith("file:///mirror/")


def test_bucket_overrides():
    r = rules()
    assert r.bucket("sentinel-cogs") == BucketOverride(bucket="sentinel-cogs", region="us-west-2", skip_signature=True)
    assert r.bucket("rp").requester_pays
    assert r.bucket("unknown") is None


def test_registry_applies_rules_and_bucket_endpoint():
    registry = StoreRegistry(rewrite=rules())
    loc = registry.resolve(CDN + "sentinel-s2-l2a-cogs/a.tif", collection="sentinel-2-l2a")
    assert loc == Location("s3", "sentinel-cogs", "sentinel-s2-l2a-cogs/a.tif")
    rp = StoreRegistry(rewrite=RewriteRules.of([{"prefix": "https://rp.example/", "replacement": "s3://rp/"}],
                                               [{"bucket": "rp", "endpoint": "http://127.0.0.1:9000"}]))
    assert rp.resolve("https://rp.example/k").endpoint == "http://127.0.0.1:9000"


def test_rules_apply_to_relative_hrefs_after_resolution():
    # An item published at https://cdn/... with './B01.tif' is read through the same rule as an absolute href.
    registry = StoreRegistry(rewrite=rules())
    loc = registry.resolve("./sentinel-s2-l2a-cogs/B01.tif", collection="sentinel-2-l2a",
                           base=CDN + "item.json")
    assert loc == Location("s3", "sentinel-cogs", "sentinel-s2-l2a-cogs/B01.tif")


def test_lock_reads_relative_asset_through_a_rewrite_rule(tmp_path):
    # the published tree does not hold the bytes; the mirror does
    mirror = write_object(tmp_path / "mirror" / "c1" / "B01.tif", 321)
    item = make_item("i1", {"B01": "./B01.tif"})
    item["links"] = [{"rel": "self", "href": f"file://{tmp_path}/published/c1/i1.json"}]
    registry = StoreRegistry(rewrite=RewriteRules.of(
        [{"prefix": f"file://{tmp_path}/published/", "replacement": f"file://{tmp_path}/mirror/"}]))
    summary = build_lock([item], registry, tmp_path / "lock.parquet", assets=AssetFilter())
    assert summary.failures == []
    (row,) = iter_lock(tmp_path / "lock.parquet")
    assert row.location.key == str(mirror) and row.size == 321


def test_rule_validation():
    with pytest.raises(ValidationError):
        RewriteRule(prefix="https://a/")  # replacement missing
