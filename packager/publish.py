"""Put package files where the package lives (a local folder or an object-store prefix), whole or not at all.

The engine writes every output to a local file first (atomically, see
:class:`packager.lock.ParquetTableWriter`), then publishes it: a rename on the same filesystem, or an
object PUT (single or multipart, which S3-like stores make visible only on completion). A package
file is therefore either the previous complete version or the new complete version.

Fencing: when this process holds a lease over the destination (:mod:`packager.lease`, taken by the
command or asset that writes the package), the lease is read again first; a run whose lease expired or
was taken over raises :class:`~packager.lease.LeaseLost` instead of overwriting the new holder's files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from packager.atomic import atomic_path
from packager.lease import check_fences
from packager.locations import Location, parse_href
from packager.stores import StoreRegistry

CHUNK = 8 << 20


def package_location(url_or_path: str, registry: StoreRegistry) -> Location:
    """The location of a package root given as a URL or a plain path (made absolute)."""
    if "://" not in url_or_path:
        url_or_path = "file://" + os.path.abspath(url_or_path)
    return registry.with_endpoint(parse_href(url_or_path))


def local_path(location: Location) -> Path | None:
    return Path(location.key) if location.kind == "file" else None


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def publish(source: Path, dest: Location, registry: StoreRegistry, *, content_type: str | None = None) -> str:
    """Copy the local file ``source`` to ``dest`` atomically; returns the destination href."""
    check_fences(dest)
    target = local_path(dest)
    if target is not None:
        if target.resolve() == Path(source).resolve():
            return dest.href()
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        return dest.href()
    store = registry.store_for(dest)
    asyncio.run(store.put_stream(dest.key, _file_chunks(Path(source)), chunk_size=CHUNK, max_concurrency=4,
                                 content_type=content_type))
    return dest.href()


def fetch(source: Location, registry: StoreRegistry, workdir: Path) -> Path:
    """A local path holding the bytes of ``source``: the file itself, or a download into ``workdir``."""
    path = local_path(source)
    if path is not None:
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / Path(source.key).name
    store = registry.store_for(source)

    async def download() -> None:
        with open(dest, "wb") as handle:
            async for chunk in store.stream(source.key, CHUNK):
                handle.write(chunk)

    asyncio.run(download())
    return dest
