"""S3 upload bodies go UNSIGNED-PAYLOAD by default (as rclone and the AWS CLI send them), signed on request.

Seen on the wire through a recording proxy in front of the real S3 server: the ``x-amz-content-sha256``
header of each PUT, and the object that arrived.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from packager.locations import parse_href
from packager.profiles import StorageProfile
from packager.stores import StoreRegistry

pytestmark = pytest.mark.integration

BODY = b"payload signing " * 4096  # 64 KiB


def _put_through_proxy(s3_endpoint, bucket: str, proxy_url: str, key: str, **settings) -> str | None:
    profile = StorageProfile(name="p", url=f"s3://{bucket}", endpoint=proxy_url, region=s3_endpoint.region,
                             access_key_id=s3_endpoint.access_key_id,
                             secret_access_key=s3_endpoint.secret_access_key, **settings)
    store = StoreRegistry([profile]).store_for(parse_href(f"s3://{bucket}/{key}"))

    async def chunks():
        yield BODY

    return asyncio.run(store.put_stream(key, chunks(), chunk_size=8 << 20, max_concurrency=2))


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, "UNSIGNED-PAYLOAD"),
    ({"sign_payload": True}, hashlib.sha256(BODY).hexdigest()),
], ids=["default-unsigned", "sign_payload"])
def test_upload_bodies_are_signed_only_when_asked(s3_endpoint, s3_client, s3_bucket_factory, fault_proxy_factory,
                                                    settings, expected):
    bucket = s3_bucket_factory()
    proxy = fault_proxy_factory(s3_endpoint.endpoint)
    etag = _put_through_proxy(s3_endpoint, bucket, proxy.url, "obj.bin", **settings)
    puts = [headers for method, _, headers in proxy.request_heads if method == "PUT"]
    assert [headers.get("x-amz-content-sha256") for headers in puts] == [expected]
    stored = s3_client.get_object(Bucket=bucket, Key="obj.bin")
    assert stored["Body"].read() == BODY and stored["ETag"] == etag
