"""Local facts from stat(2) must be exactly what obstore reports, or locks would not validate across paths."""

import asyncio
import os
from pathlib import Path

import obstore
from obstore.store import LocalStore

from packager.errors import ObjectNotFound
from packager.locations import parse_href
from packager.stores import StoreRegistry, local_facts
from packager.stores.local_facts import plain_key, stat_facts
from packager.stores.obstore_backend import _facts


def _files(tmp_path: Path) -> list[Path]:
    paths = []
    for i, size in enumerate([0, 1, 1023, 70_000]):
        path = tmp_path / f"sub dir/ünï-{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(size))
        paths.append(path)
    # mtimes with every digit of the microseconds used, and one on a whole second
    os.utime(paths[0], ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    os.utime(paths[1], ns=(1_700_000_001_000_000_000, 1_700_000_001_000_000_000))
    os.utime(paths[2], ns=(1_699_999_999_999_999_999, 1_699_999_999_999_999_999))
    return paths


def test_stat_facts_equal_obstore_head(tmp_path: Path) -> None:
    store = LocalStore("/")
    for path in _files(tmp_path):
        expected = _facts(obstore.head(store, str(path).lstrip("/")), local=True)
        assert stat_facts(str(path)) == expected, path


def test_head_many_equals_head_and_types_errors(tmp_path: Path) -> None:
    paths = _files(tmp_path)
    store = StoreRegistry([]).store_for(parse_href(f"file://{tmp_path}/x"))
    keys = [str(p).lstrip("/") for p in paths] + [f"{str(tmp_path).lstrip('/')}/missing.bin",
                                                   f"{str(tmp_path).lstrip('/')}/sub dir"]

    async def main():
        many = await store.head_many(keys)
        singles = [await store.head(k) for k in keys[:-2]]
        return many, singles

    many, singles = asyncio.run(main())
    assert many[:-2] == singles
    for error in many[-2:]:  # a missing file and a directory: not found, naming the href
        assert isinstance(error, ObjectNotFound)
    assert "missing.bin" in str(many[-2])


def test_keys_obstore_would_refuse_are_left_to_obstore(tmp_path: Path) -> None:
    assert plain_key("a/b/c.tif")
    for key in ("", "a//b", "a/../b", "./a"):
        assert not plain_key(key)
    store = StoreRegistry([]).store_for(parse_href(f"file://{tmp_path}/x"))
    assert asyncio.run(store.head_many(["tmp/../etc/passwd"])) is None


def test_remote_stores_have_no_batch_head() -> None:
    store = StoreRegistry([]).store_for(parse_href("https://example.com/a.tif"))
    assert asyncio.run(store.head_many(["a.tif"])) is None



def test_slow_filesystems_are_stat_ed_in_threads_with_the_same_results(tmp_path: Path, monkeypatch) -> None:
    """Fast stats (the kernel's caches) run in the loop's thread; once a slice is slow the rest go to
    worker threads. Either way: the same facts and errors, in order."""
    paths = [str(p) for p in _files(tmp_path)] * 300 + [str(tmp_path / "missing.bin"), str(tmp_path / "sub dir")]
    translate = lambda exc, path: ObjectNotFound(f"{path}: {exc}", href=path)  # noqa: E731
    threads: list[int] = []
    real_threaded = local_facts._stat_threaded

    async def counting(batch):
        threads.append(len(batch))
        return await real_threaded(batch)

    monkeypatch.setattr(local_facts, "_stat_threaded", counting)
    inline = asyncio.run(local_facts.stat_many(paths, translate))
    assert threads == []
    monkeypatch.setattr(local_facts, "SLOW_STAT_SECONDS", -1.0)  # every stat counts as slow
    threaded = asyncio.run(local_facts.stat_many(paths, translate))
    assert threads == [len(paths) - local_facts.INLINE_SLICE // 4]
    assert [f for f in threaded if not isinstance(f, BaseException)] == [
        f for f in inline if not isinstance(f, BaseException)] == [stat_facts(p) for p in paths[:-2]]
    assert [str(f) for f in threaded[-2:]] == [str(f) for f in inline[-2:]] and "missing.bin" in str(inline[-2])


def test_plain_keys() -> None:
    for key in ("a", "/abs/b.tif", "a/.b/c", "a/b..", "..a/b", "a/.../b", "a/b/"):
        assert plain_key(key), key
    for key in ("", "a//b", ".", "..", "a/.", "a/..", "./a", "../a", "a/./b", "a/../b", "//a"):
        assert not plain_key(key), key
