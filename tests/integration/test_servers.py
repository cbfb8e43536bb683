"""Smoke tests of the real servers the suite starts: what a client sees, not how the servers run."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import obstore
import pytest
from obstore.store import S3Store
from pystac_client import Client

from devservers import S3Server, stacdata

pytestmark = pytest.mark.integration

SYNTH = stacdata.SYNTH_COLLECTION


# --- S3 ---------------------------------------------------------------------------------------------


def _store(server: S3Server, bucket: str, **overrides: Any) -> S3Store:
    return S3Store(bucket, **{**server.obstore_kwargs(), **overrides})


def test_s3_put_get_head(s3_endpoint: S3Server, s3_bucket: str, s3_client: Any) -> None:
    store = _store(s3_endpoint, s3_bucket)
    body = b"hello stac-packager\n" * 1000
    obstore.put(store, "dir/hello.txt", body)

    assert bytes(obstore.get(store, "dir/hello.txt").bytes()) == body
    assert bytes(obstore.get_range(store, "dir/hello.txt", start=6, end=10)) == b"stac"
    meta = obstore.head(store, "dir/hello.txt")
    assert meta["size"] == len(body)
    assert meta["e_tag"] == f'"{hashlib.md5(body).hexdigest()}"'  # single-part upload: quoted MD5
    # another client sees the same object
    assert s3_client.head_object(Bucket=s3_bucket, Key="dir/hello.txt")["ContentLength"] == len(body)
    assert [m["path"] for batch in obstore.list(store, prefix="dir") for m in batch] == ["dir/hello.txt"]


def test_s3_wrong_secret_rejected(s3_endpoint: S3Server, s3_bucket: str, s3_client: Any) -> None:
    bad = _store(s3_endpoint, s3_bucket, secret_access_key="not-the-secret")
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|403|Forbidden|AccessDenied") as err:
        obstore.put(bad, "intruder.txt", b"x")
    assert "intruder" not in str(s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", []))
    assert err.type.__module__.startswith("obstore")


def test_s3_buckets_are_fresh_and_distinct(s3_bucket_factory: Any, s3_client: Any) -> None:
    a, b = s3_bucket_factory(), s3_bucket_factory()
    assert a != b
    for bucket in (a, b):
        assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


# --- STAC API ----------------------------------------------------------------------------------------


def _when(item: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))


def test_stac_paging_over_synthetic_collection(stac_api_url: str, stac_synthetic_items: list[dict]) -> None:
    client = Client.open(stac_api_url)
    assert client.search(collections=[SYNTH], max_items=1).matched() == len(stac_synthetic_items)

    start, end = dt.datetime(2020, 2, 1, tzinfo=dt.UTC), dt.datetime(2020, 3, 1, tzinfo=dt.UTC)
    expected = {it["id"] for it in stac_synthetic_items if start <= _when(it) <= end}
    search = client.search(collections=[SYNTH], datetime=[start, end], limit=100)  # POST by default
    pages = list(search.pages_as_dicts())
    got = [f["id"] for page in pages for f in page["features"]]

    assert len(expected) > 250  # several pages of 100
    assert len(pages) == -(-len(expected) // 100)
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected
    assert search.matched() == len(expected)


def test_stac_bbox_search_returns_expected_ids(stac_api_url: str, stac_synthetic_items: list[dict]) -> None:
    bbox = [10, 10, 40, 30]
    expected = {it["id"] for it in stac_synthetic_items if stacdata.bbox_intersects(it["bbox"], bbox)}
    search = Client.open(stac_api_url).search(collections=[SYNTH], bbox=bbox, limit=10)
    got = [it["id"] for it in search.items_as_dicts()]
    assert len(expected) == 31
    assert sorted(got) == sorted(expected)


# pystac-client 0.9.1 knows only v1.0.* sort conformance URIs; pgstac advertises v1.1.0 and sorts fine
@pytest.mark.filterwarnings("ignore:Server does not conform to SORT")
def test_stac_cql2_filter_and_sortby(stac_api_url: str, stac_synthetic_items: list[dict]) -> None:
    want = [it for it in stac_synthetic_items if it["properties"]["eo:cloud_cover"] < 10]
    search = Client.open(stac_api_url).search(
        collections=[SYNTH],
        filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]},
        filter_lang="cql2-json",
        sortby="-eo:cloud_cover",
        limit=100,
    )
    got = list(search.items_as_dicts())
    covers = [it["properties"]["eo:cloud_cover"] for it in got]
    assert search.matched() == len(want) == len(got)
    assert {it["id"] for it in got} == {it["id"] for it in want}
    assert covers == sorted((it["properties"]["eo:cloud_cover"] for it in want), reverse=True)


def test_stac_real_items_served_unchanged(stac_api_url: str) -> None:
    real = [it for it in stacdata.read_ndjson(stacdata.ITEMS_FILE) if it["collection"] == "landsat-c2l2-sr"]
    want = real[0]
    (got,) = (
        Client.open(stac_api_url).search(collections=["landsat-c2l2-sr"], ids=[want["id"]]).items_as_dicts()
    )
    # pgstac rewrites links; the assets (with requester-pays s3:// alternates) come back as loaded
    assert json.dumps(got["assets"], sort_keys=True) == json.dumps(want["assets"], sort_keys=True)
    assert got["assets"]["red"]["alternate"]["s3"]["href"].startswith("s3://usgs-landsat/")
