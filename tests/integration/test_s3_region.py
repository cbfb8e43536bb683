"""A store configured for the wrong region: one clear error that names the right region and the setting.

The S3 server here is Swift's S3 API (``s3api``) in region ``eu-central-1``: like AWS, it refuses a
request signed for another region with ``AuthorizationHeaderMalformed`` and the region it expects.
A HEAD answer carries no body, so the store asks again with a one-byte GET to learn why.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from packager.lock import build_lock, iter_lock
from packager.profiles import StorageProfile
from packager.stores import StoreRegistry
from packager.stores.s3_region import WrongRegion
from tests.fixtures_storage_servers import SWIFT_S3_REGION

pytestmark = pytest.mark.integration

BUCKET = "region-test"


@pytest.fixture(scope="module")
def s3api_bucket(swift_server):
    conn = swift_server.connection()
    conn.put_container(BUCKET)
    conn.put_object(BUCKET, "scene/B04.tif", b"band four")
    return swift_server


def _registry(server, region: str) -> StoreRegistry:
    return StoreRegistry([StorageProfile(
        name="swift-s3", url=f"s3://{BUCKET}", endpoint=server.s3_endpoint, region=region,
        access_key_id=server.user, secret_access_key=server.key, allow_http=True)])


def _item() -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": "scene", "collection": "s2",
            "geometry": None, "properties": {"datetime": "2024-06-01T00:00:00Z"}, "links": [],
            "assets": {"B04": {"href": f"s3://{BUCKET}/scene/B04.tif"}}}


def _store(registry: StoreRegistry, href: str):
    location = registry.resolve(href)
    return registry.store_for(location), location.key


def test_lock_with_the_wrong_region_names_the_right_one_and_the_setting(s3api_bucket, tmp_path):
    summary = build_lock([_item()], _registry(s3api_bucket, "us-east-1"), tmp_path / "lock.parquet")

    assert summary.rows == 0
    [failure] = summary.failures
    assert failure.error_code == "wrong_region"
    assert f"s3://{BUCKET}/scene/B04.tif" in failure.error
    assert f"region '{SWIFT_S3_REGION}'" in failure.error and "'us-east-1'" in failure.error
    assert f"set `region: {SWIFT_S3_REGION}` in the storage profile that serves s3://{BUCKET}" in failure.error
    assert s3api_bucket.key not in json.dumps(failure.as_record())


def test_the_same_lock_with_the_region_it_names_succeeds(s3api_bucket, tmp_path):
    summary = build_lock([_item()], _registry(s3api_bucket, SWIFT_S3_REGION), tmp_path / "lock.parquet")

    assert summary.failures == [] and summary.rows == 1
    [row] = list(iter_lock(tmp_path / "lock.parquet"))
    assert row.size == len(b"band four")


@pytest.mark.parametrize("operation", ["put", "get", "list"])
def test_every_operation_with_the_wrong_region_says_so(s3api_bucket, operation):
    store, key = _store(_registry(s3api_bucket, "us-west-2"), f"s3://{BUCKET}/scene/B04.tif")

    async def attempt():
        if operation == "put":
            await store.put_bytes("scene/new.bin", b"x")
        elif operation == "get":
            await store.get_range(key, 0, 4)
        else:
            return [entry async for entry in store.list("scene/")]

    with pytest.raises(WrongRegion) as raised:
        asyncio.run(attempt())
    assert f"region '{SWIFT_S3_REGION}'" in str(raised.value)
    assert "'us-west-2'" in str(raised.value)
    assert s3api_bucket.key not in str(raised.value)
