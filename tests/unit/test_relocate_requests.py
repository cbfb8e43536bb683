"""Which requests a relocation sends: source facts from the GET that streams the bytes, HEADs only where needed.

A fresh destination needs no HEAD of the source (the GET's response carries size, ETag and last-modified);
a re-run HEADs what the target listing shows and copies nothing that is already there. Stores without
``open_read`` (Swift, WebDAV) get HEAD + stream, and a keystore-guarded store checks ``read`` first.
The stores are the real local-file backend behind a thin recorder, no fakes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from packager.errors import AccessDenied
from packager.locations import Location, parse_href
from packager.lock import build_lock, iter_lock
from packager.relocate import MiB, RelocationSettings, _source_md5, relocate
from packager.stores import ObjectFacts, StoreRegistry
from packager.stores.base import OpenedObject, Store, open_read
from packager.stores.guarded import GuardedStore
from packager.stores.obstore_backend import _chain
from packager.validate import validate
from tests.unit import make_items, write_object

SETTINGS = RelocationSettings(concurrency=4, chunk_size=5 * MiB, memory_limit=64 * MiB, put_concurrency=2)


class Recorder:
    """Delegates to a store and records ``(operation, key)`` for every request the relocation makes."""

    def __init__(self, inner: Store, calls: list[tuple[str, str]]) -> None:
        self._inner = inner
        self.calls = calls
        self.describe = inner.describe
        self.keeps_metadata = inner.keeps_metadata

    def __getattr__(self, name: str):  # list, delete, set_checksum ... pass through unrecorded
        return getattr(self._inner, name)

    async def head(self, key: str) -> ObjectFacts:
        self.calls.append(("head", key))
        return await self._inner.head(key)

    def stream(self, key: str, chunk_size: int):
        self.calls.append(("stream", key))
        return self._inner.stream(key, chunk_size)

    async def open_read(self, key: str, chunk_size: int) -> OpenedObject:
        self.calls.append(("open_read", key))
        return await self._inner.open_read(key, chunk_size)

    async def read_metadata(self, key: str) -> dict[str, str]:
        self.calls.append(("read_metadata", key))
        return await self._inner.read_metadata(key)

    async def put_stream(self, key: str, chunks, **kwargs) -> str | None:
        self.calls.append(("put_stream", key))
        return await self._inner.put_stream(key, chunks, **kwargs)


class WithoutOpenRead(Recorder):
    """A backend like Swift or WebDAV: no ``open_read``, so :func:`open_read` falls back to HEAD + stream."""

    open_read = None  # type: ignore[assignment]


class RecordingRegistry(StoreRegistry):
    def __init__(self, recorder: type[Recorder] = Recorder) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self._recorder = recorder

    def store_for(self, location: Location) -> Store:
        return self._recorder(super().store_for(location), self.calls)


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock.parquet"
    assert build_lock(make_items(tmp_path, 3), StoreRegistry(), path).failures == []
    return path


def _run(registry: StoreRegistry, lock: Path, tmp_path: Path, name: str):
    return relocate(lock, parse_href(f"{tmp_path}/dest/"), registry, tmp_path / f"{name}.parquet",
                    tmp_path / f"{name}.failures.parquet", SETTINGS)


def _by_source(calls: list[tuple[str, str]], tmp_path: Path) -> tuple[list[str], list[str]]:
    """Operations on sources and on destinations, in order."""
    source = [op for op, key in calls if key.startswith(str(tmp_path / "src"))]
    dest = [op for op, key in calls if key.startswith(str(tmp_path / "dest"))]
    return source, dest


def test_fresh_destination_takes_source_facts_from_the_get(lock: Path, tmp_path: Path) -> None:
    registry = RecordingRegistry()
    summary = _run(registry, lock, tmp_path, "first")
    assert (summary.copied, summary.failures) == (6, [])
    source_ops, dest_ops = _by_source(registry.calls, tmp_path)
    assert source_ops == ["open_read"] * 6  # no HEAD, no second GET
    assert "read_metadata" not in dest_ops and dest_ops.count("put_stream") == 6
    # the new lock holds what validation observes at the destination: size, ETag, last-modified, sha256
    rows = list(iter_lock(tmp_path / "first.parquet"))
    for row, before in zip(rows, iter_lock(lock), strict=True):
        facts = asyncio.run(StoreRegistry().store_for(row.location).head(row.location.key))
        assert (row.size, row.etag, row.last_modified) == (facts.size, facts.etag, facts.last_modified_iso())
        assert row.size == before.size and row.etag != before.etag  # the copy's own ETag, not the source's
    report = validate(tmp_path / "first.parquet", StoreRegistry(), tmp_path / "report.parquet", deep=True)
    assert report.clean and report.rows == 6
    assert {"size", "etag", "last_modified", "checksum"} <= set(report_checks(tmp_path / "report.parquet"))


def report_checks(report: Path) -> set[str]:
    import pyarrow.parquet as pq

    return {check for checks in pq.read_table(report)["checks"].to_pylist() for check in checks}


def test_rerun_without_source_get_skips_identical_objects(lock: Path, tmp_path: Path) -> None:
    _run(StoreRegistry(), lock, tmp_path, "first")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "dest").rglob("*") if p.is_file()}
    registry = RecordingRegistry()
    summary = _run(registry, lock, tmp_path, "second")
    assert (summary.copied, summary.present, summary.bytes_copied, summary.failures) == (0, 6, 0, [])
    source_ops, dest_ops = _by_source(registry.calls, tmp_path)
    # the listing shows every destination: HEAD both sides, compare checksums, read no source bytes
    assert source_ops.count("head") == 6 and "open_read" not in source_ops
    assert "put_stream" not in dest_ops and dest_ops.count("head") == 6
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "dest").rglob("*") if p.is_file()} == mtimes
    assert [r.as_record() for r in iter_lock(tmp_path / "second.parquet")] == \
        [r.as_record() for r in iter_lock(tmp_path / "first.parquet")]


def test_store_without_open_read_gets_head_then_stream(lock: Path, tmp_path: Path) -> None:
    registry = RecordingRegistry(WithoutOpenRead)
    summary = _run(registry, lock, tmp_path, "first")
    assert (summary.copied, summary.failures) == (6, [])
    per_source: dict[str, list[str]] = {}
    for op, key in registry.calls:
        if key.startswith(str(tmp_path / "src")):
            per_source.setdefault(key, []).append(op)
    assert list(per_source.values()) == [["head", "stream"]] * 6
    assert validate(tmp_path / "first.parquet", StoreRegistry(), tmp_path / "r.parquet", deep=True).clean


def test_source_rewritten_with_same_size_fails_on_the_get_etag(lock: Path, tmp_path: Path) -> None:
    rows = list(iter_lock(lock))
    path = Path(rows[1].location.key)
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)  # same bytes, new inode and mtime: another ETag than the locked one
    os.utime(path, ns=(1, 1))
    summary = _run(StoreRegistry(), lock, tmp_path, "out")
    assert summary.copied == 5 and len(summary.failures) == 1
    assert "changed since it was locked" in summary.failures[0].error and "etag" in summary.failures[0].error
    assert not (tmp_path / "dest" / "c1" / rows[1].item_id / "thumb.png").exists()


def test_open_read_gives_head_facts_and_all_bytes(tmp_path: Path) -> None:
    path = write_object(tmp_path / "obj.bin", 3 * MiB + 17, seed=3)
    store = StoreRegistry().store_for(parse_href(str(path)))

    async def main() -> tuple[ObjectFacts, bytes, ObjectFacts]:
        opened = await open_read(store, str(path), MiB)
        return opened.facts, b"".join([c async for c in opened.chunks]), await store.head(str(path))

    facts, data, head = asyncio.run(main())
    assert facts == head and data == path.read_bytes()


def test_open_read_falls_back_to_head_and_stream(tmp_path: Path) -> None:
    path = write_object(tmp_path / "obj.bin", 1000, seed=4)
    calls: list[tuple[str, str]] = []
    store = WithoutOpenRead(StoreRegistry().store_for(parse_href(str(path))), calls)

    async def main() -> tuple[ObjectFacts, bytes]:
        opened = await open_read(store, str(path), MiB)
        return opened.facts, b"".join([c async for c in opened.chunks])

    facts, data = asyncio.run(main())
    assert calls == [("head", str(path)), ("stream", str(path))]
    assert facts.size == 1000 and data == path.read_bytes()


def test_guarded_open_read_needs_the_read_capability(tmp_path: Path) -> None:
    path = write_object(tmp_path / "obj.bin", 1000, seed=5)
    inner = StoreRegistry().store_for(parse_href(str(path)))
    write_only = GuardedStore(inner, key_name="w", capabilities=("write",))
    with pytest.raises(AccessDenied, match="lacks the 'read' capability"):
        asyncio.run(open_read(write_only, str(path), MiB))
    reader = GuardedStore(inner, key_name="r", capabilities=("read",))

    async def main() -> OpenedObject:
        return await open_read(reader, str(path), MiB)

    assert asyncio.run(main()).facts == asyncio.run(inner.head(str(path)))


@pytest.mark.parametrize(("chunk_mib", "put_concurrency"), [(5, 1), (5, 2), (8, 4), (16, 8), (64, 16)])
def test_reads_in_flight_fit_the_reservation(chunk_mib: int, put_concurrency: int) -> None:
    """Parts in flight + the part filling + reads (arriving, hashed, held back, split by part boundaries)."""
    settings = RelocationSettings(chunk_size=chunk_mib * MiB, put_concurrency=put_concurrency)
    held = (put_concurrency + 1) * settings.chunk_size + (put_concurrency + 3) * settings.read_size
    assert held <= settings.reservation(settings.chunk_size * put_concurrency)
    assert settings.read_size <= MiB


@pytest.mark.parametrize(("etag", "size", "expected"), [
    ('"0CC175B9C0F1B6A831C399E269772661"', 100, "0cc175b9c0f1b6a831c399e269772661"),  # one PUT's MD5
    ("0cc175b9c0f1b6a831c399e269772661", 5 * MiB, "0cc175b9c0f1b6a831c399e269772661"),
    ('"0cc175b9c0f1b6a831c399e269772661-2"', 100, None),  # a multipart ETag is not the content's MD5
    ('"0cc175b9c0f1b6a831c399e269772661"', 5 * MiB + 1, None),  # the copy goes up in parts
    ('"3f2a9-1b7c4e5f6a8d0-3e8"', 1000, None),  # a local file's inode-mtime-size
    (None, 100, None),
])
def test_source_md5_only_for_plain_md5_etags_of_single_put_copies(etag: str | None, size: int,
                                                                   expected: str | None) -> None:
    assert _source_md5(ObjectFacts(size, etag, None), SETTINGS) == expected


def test_multipart_body_does_not_keep_its_first_chunks() -> None:
    """The first chunks read (to tell a single PUT from a multipart one) are let go once sent."""
    head = [b"a" * 10, b"b" * 10]

    async def rest():
        assert head == []  # both handed on before the rest of the source is read
        yield b"c"

    async def main() -> list[bytes]:
        return [chunk async for chunk in _chain(head, rest())]

    assert asyncio.run(main()) == [b"a" * 10, b"b" * 10, b"c"]
