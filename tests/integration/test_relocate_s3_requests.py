"""S3 -> S3 relocation on a real server: the requests per object and what the new lock records.

A fresh target: one GET per source (its response gives size, ETag and last-modified; no HEAD), one PUT,
and one listing for the facts of up to 1,000 copies instead of a HEAD each; the source's MD5 ETag stands
for the MD5 of the bytes of a single-PUT copy. A re-run copies nothing. An ETag that only looks like an MD5 cannot pass a copy: it is then read back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from packager.locations import Location, parse_href
from packager.lock import build_lock, iter_lock
from packager.profiles import StorageProfile
from packager.relocate import MiB, RelocationSettings, relocate
from packager.stores import ObjectFacts, Store, StoreRegistry
from packager.stores.base import OpenedObject
from packager.validate import validate

pytestmark = pytest.mark.integration

#: one object per path: empty, small, a single PUT of several reads, a multipart copy
SIZES = {"empty": 0, "small": 1500, "reads": 3 * MiB + 5, "parts": 7 * MiB}
SETTINGS = RelocationSettings(concurrency=4, memory_limit=64 * MiB, chunk_size=5 * MiB, put_concurrency=2)


class Recorder:
    """Delegates to a store; records ``(operation, key)``; ``fake_etag`` replaces every ETag it reports."""

    def __init__(self, inner: Store, calls: list[tuple[str, str]], fake_etag: str | None) -> None:
        self._inner, self.calls, self._fake = inner, calls, fake_etag
        self.describe, self.keeps_metadata = inner.describe, inner.keeps_metadata

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def _facts(self, facts: ObjectFacts) -> ObjectFacts:
        return ObjectFacts(facts.size, self._fake, facts.last_modified, facts.version) if self._fake else facts

    async def head(self, key: str) -> ObjectFacts:
        self.calls.append(("head", key))
        return self._facts(await self._inner.head(key))

    def stream(self, key: str, chunk_size: int):
        self.calls.append(("stream", key))
        return self._inner.stream(key, chunk_size)

    async def open_read(self, key: str, chunk_size: int) -> OpenedObject:
        self.calls.append(("open_read", key))
        opened = await self._inner.open_read(key, chunk_size)
        return OpenedObject(self._facts(opened.facts), opened.chunks)

    async def put_stream(self, key: str, chunks, **kwargs) -> str | None:
        self.calls.append(("put_stream", key))
        return await self._inner.put_stream(key, chunks, **kwargs)

    async def listed_facts(self, keys) -> dict[str, ObjectFacts]:
        self.calls.append(("listed_facts", ",".join(sorted(keys))))
        return await self._inner.listed_facts(keys)


class RecordingRegistry(StoreRegistry):
    """Records the requests to the source bucket (and fakes its ETags when asked), and to the target's."""

    def __init__(self, profiles: list[StorageProfile], source_bucket: str, fake_etag: str | None = None,
                 target_bucket: str | None = None) -> None:
        super().__init__(profiles)
        self.calls: list[tuple[str, str]] = []
        self.target_calls: list[tuple[str, str]] = []
        self._source, self._fake, self._target = source_bucket, fake_etag, target_bucket

    def store_for(self, location: Location) -> Store:
        store = super().store_for(location)
        if location.container == self._source:
            return Recorder(store, self.calls, self._fake)
        if location.container == self._target:
            return Recorder(store, self.target_calls, None)
        return store


def _data(name: str, size: int) -> bytes:
    block = hashlib.sha256(name.encode()).digest() * 2048
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def world(s3_endpoint, s3_client, s3_bucket_factory):
    source, target = s3_bucket_factory(), s3_bucket_factory()
    for name, size in SIZES.items():
        s3_client.put_object(Bucket=source, Key=f"src/{name}.bin", Body=_data(name, size))
    profiles = [StorageProfile(name=f"p-{b}", url=f"s3://{b}", endpoint=s3_endpoint.endpoint,
                               region=s3_endpoint.region, access_key_id=s3_endpoint.access_key_id,
                               secret_access_key=s3_endpoint.secret_access_key) for b in (source, target)]
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": f"item-{name}", "collection": "c",
              "geometry": None, "properties": {}, "links": [],
              "assets": {"data": {"href": f"s3://{source}/src/{name}.bin"}}} for name in SIZES]
    return {"source": source, "target": target, "profiles": profiles, "items": items, "endpoint": s3_endpoint}


def _lock(world, registry: StoreRegistry, path: Path, *, checksum: bool = False) -> Path:
    summary = build_lock(world["items"], registry, path, checksum=checksum)
    assert not summary.failures and summary.rows == len(SIZES)
    return path


def _target(world) -> Location:
    return parse_href(f"s3://{world['target']}/copy", endpoint=world["endpoint"].endpoint)


def test_fresh_target_one_get_per_source_and_lock_holds_copy_facts(world, s3_client, tmp_path):
    # a lock with checksums: the re-run compares them with the copies' metadata, reading no bytes
    lock = _lock(world, StoreRegistry(world["profiles"]), tmp_path / "lock.parquet", checksum=True)
    registry = RecordingRegistry(world["profiles"], world["source"], target_bucket=world["target"])
    first = relocate(lock, _target(world), registry, tmp_path / "out.parquet", tmp_path / "f.parquet", SETTINGS)
    assert not first.failures, [f.error for f in first.failures]
    assert (first.copied, first.bytes_copied) == (len(SIZES), sum(SIZES.values()))
    assert sorted(op for op, _ in registry.calls) == ["open_read"] * len(SIZES)  # no HEAD of any source
    # no HEAD of any copy either: one listing observed all four for the new lock
    copies = ",".join(sorted(f"copy/c/item-{name}/data.bin" for name in SIZES))
    assert [call for call in registry.target_calls if call[0] in ("head", "listed_facts")] == \
        [("listed_facts", copies)]
    # single PUTs are proven by the source's MD5 ETag, the multipart copy by the part MD5s computed here
    assert first.verified == {"store-md5": len(SIZES)}
    for row in iter_lock(tmp_path / "out.parquet"):
        head = s3_client.head_object(Bucket=world["target"], Key=row.location.key)
        assert row.size == head["ContentLength"] and row.etag == head["ETag"]
        assert row.last_modified == head["LastModified"].isoformat()
        name = row.item_id.removeprefix("item-")
        assert row.checksum == "1220" + hashlib.sha256(_data(name, SIZES[name])).hexdigest()
    report = validate(tmp_path / "out.parquet", StoreRegistry(world["profiles"]), tmp_path / "r.parquet", deep=True)
    assert report.clean, report.first_failures

    registry.calls.clear()
    again = relocate(lock, _target(world), registry, tmp_path / "again.parquet", tmp_path / "f2.parquet", SETTINGS)
    assert (again.copied, again.present, again.failures) == (0, len(SIZES), [])
    assert sorted(op for op, _ in registry.calls) == ["head"] * len(SIZES)  # no source byte read again
    assert [r.as_record() for r in iter_lock(tmp_path / "again.parquet")] == \
        [r.as_record() for r in iter_lock(tmp_path / "out.parquet")]


def test_etag_that_only_looks_like_md5_makes_copies_read_back(world, s3_client, tmp_path):
    fake = '"' + "0" * 32 + '"'
    registry = RecordingRegistry(world["profiles"], world["source"], fake_etag=fake)
    lock = _lock(world, registry, tmp_path / "lock.parquet")
    assert {r.etag for r in iter_lock(lock)} == {fake}
    summary = relocate(lock, _target(world), registry, tmp_path / "out.parquet", tmp_path / "f.parquet", SETTINGS)
    assert not summary.failures, [f.error for f in summary.failures]
    # the single PUTs' ETags differ from the fake: read back; the multipart copy keeps its own part MD5s
    assert summary.verified == {"read-back": len(SIZES) - 1, "store-md5": 1}
    for name, size in SIZES.items():
        body = s3_client.get_object(Bucket=world["target"], Key=f"copy/c/item-{name}/data.bin")["Body"].read()
        assert body == _data(name, size)
