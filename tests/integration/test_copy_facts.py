"""Observing fresh copies by listing (S3): HEAD's facts, the checks a HEAD would make, HEADs where it falls short.

Against the real S3 server: the facts one listing gives equal boto3's HEAD of each object (Last-Modified
to the second, as HEAD's header has it); a copy with another size or ETag than its upload fails its row
and is deleted; a copy gone since is a failure naming it; keys spread beyond the listing's budget are
HEADed instead.
"""

from __future__ import annotations

import asyncio

import pytest

from packager import copy_facts
from packager.copy_facts import Unverified, observe
from packager.errors import StoreError
from packager.locations import parse_href
from packager.lock import LockRow
from packager.profiles import StorageProfile
from packager.stores import StoreRegistry
from packager.stores.obstore_backend import LISTED_FACTS_SCAN

pytestmark = pytest.mark.integration


class CountingStore:
    """Delegates to a store, counting its HEADs and listings."""

    def __init__(self, inner) -> None:
        self._inner, self.heads, self.listings = inner, 0, 0

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    async def head(self, key: str):
        self.heads += 1
        return await self._inner.head(key)

    async def listed_facts(self, keys):
        self.listings += 1
        return await self._inner.listed_facts(keys)


@pytest.fixture
def bucket_store(s3_endpoint, s3_bucket_factory):
    bucket = s3_bucket_factory()
    profile = StorageProfile(name="p", url=f"s3://{bucket}", endpoint=s3_endpoint.endpoint, region=s3_endpoint.region,
                             access_key_id=s3_endpoint.access_key_id, secret_access_key=s3_endpoint.secret_access_key)
    store = StoreRegistry([profile]).store_for(parse_href(f"s3://{bucket}/x"))
    return bucket, CountingStore(store)


def _unverified(bucket: str, key: str, size: int, put_etag: str | None) -> Unverified:
    dest = parse_href(f"s3://{bucket}/{key}")
    row = LockRow("c", key, "data", dest, dest.href())
    return Unverified(row, dest, size, put_etag, "1220" + "0" * 64)


def test_listing_gives_heads_facts_and_a_heads_checks(bucket_store, s3_client):
    bucket, store = bucket_store
    assert copy_facts.lists_head_facts(store)
    etags = {}
    for key in ("pkg/a/1.bin", "pkg/a/2.bin", "pkg/b/3.bin", "pkg/b/4.bin", "pkg/b/5.bin", "pkg/c.bin", "other.bin"):
        etags[key] = s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode() * 100)["ETag"]
    copies = [_unverified(bucket, "pkg/a/1.bin", 1100, etags["pkg/a/1.bin"]),
              _unverified(bucket, "pkg/a/2.bin", 1100, None),  # a store that answered no ETag: size only
              _unverified(bucket, "pkg/b/3.bin", 1100, '"' + "f" * 32 + '"'),  # written over since its upload
              _unverified(bucket, "pkg/b/4.bin", 999, etags["pkg/b/4.bin"]),  # not the size that was sent
              _unverified(bucket, "pkg/b/6.bin", 10, '"' + "e" * 32 + '"'),  # gone since
              _unverified(bucket, "pkg/c.bin", 900, etags["pkg/c.bin"])]
    results = asyncio.run(observe(store, copies, concurrency=4, attempts=2))

    for key, facts in (("pkg/a/1.bin", results[0]), ("pkg/a/2.bin", results[1]), ("pkg/c.bin", results[5])):
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert (facts.size, facts.etag, facts.last_modified) == (head["ContentLength"], head["ETag"],
                                                                 head["LastModified"])
    assert isinstance(results[2], StoreError) and "written over since" in str(results[2])
    assert isinstance(results[3], StoreError) and "has 1100 bytes, expected 999" in str(results[3])
    assert isinstance(results[4], StoreError) and "was gone right after its upload" in str(results[4])
    for error, key in ((results[2], "pkg/b/3.bin"), (results[3], "pkg/b/4.bin")):
        assert f"s3://{bucket}/{key}" in str(error) and "deleted it" in str(error)
    remaining = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert remaining == {"pkg/a/1.bin", "pkg/a/2.bin", "pkg/b/5.bin", "pkg/c.bin", "other.bin"}
    # one listing; only the key it could not find was HEADed
    assert (store.listings, store.heads) == (1, 1)


def test_keys_spread_beyond_the_listing_budget_are_headed(bucket_store, s3_client):
    bucket, store = bucket_store
    # more other objects between the two keys than the budget, which is counted a page (1,000 entries) at a time
    between = LISTED_FACTS_SCAN * 2 + 1000 + 1000 + 10
    keys = ["spread/a.bin", "spread/z.bin"]
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")

    async def fill():
        sem = asyncio.Semaphore(32)

        async def put(i):
            async with sem:
                await store.put_bytes(f"spread/m/{i:05d}", b"")
        await asyncio.gather(*(put(i) for i in range(between)))

    asyncio.run(fill())
    results = asyncio.run(observe(store, [_unverified(bucket, key, 1, None) for key in keys], concurrency=2,
                                  attempts=1))
    assert [r.size for r in results] == [1, 1]
    assert (store.listings, store.heads) == (1, 1)  # the first key listed, the far one HEADed
