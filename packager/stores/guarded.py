"""A store opened with a keystore key: operations the key's capabilities do not allow are refused.

Reads (head, get, stream, open_read, list, metadata) need ``read``; writes (put, delete, copy, set_checksum) need
``write``. A refusal is an :class:`~packager.errors.AccessDenied` naming the key, raised before any
request is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Any

from packager.errors import AccessDenied
from packager.stores.base import ListedObject, ObjectFacts, OpenedObject, Store, open_read


class GuardedStore:
    """Delegates to ``inner`` after checking the key's capabilities."""

    def __init__(self, inner: Store, *, key_name: str, capabilities: tuple[str, ...]) -> None:
        self._inner = inner
        self.key_name = key_name
        self.capabilities = tuple(capabilities)
        self.describe = inner.describe

    @property
    def keeps_metadata(self) -> bool:
        return self._inner.keeps_metadata

    def __getattr__(self, name: str) -> Any:  # backend specifics (href_prefix, local_root ...)
        return getattr(self._inner, name)

    def _need(self, capability: str, key: str) -> None:
        if capability not in self.capabilities:
            raise AccessDenied(
                f"{self.describe}: keystore key {self.key_name!r} lacks the {capability!r} capability "
                f"(it has: {', '.join(self.capabilities)}); refused to {'write' if capability == 'write' else 'read'} "
                f"{key!r}", href=None)

    # -- reads ------------------------------------------------------------------------------------------
    async def head(self, key: str) -> ObjectFacts:
        self._need("read", key)
        return await self._inner.head(key)

    async def head_many(self, keys: list[str]) -> list[ObjectFacts | BaseException] | None:
        if keys:
            self._need("read", keys[0])
        head_many = getattr(self._inner, "head_many", None)
        return await head_many(keys) if head_many else None

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        self._need("read", key)
        return await self._inner.get_range(key, start, end)

    async def get_ranges(self, key: str, starts: list[int], ends: list[int]) -> list[bytes]:
        self._need("read", key)
        return await self._inner.get_ranges(key, starts, ends)

    def stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        self._need("read", key)
        return self._inner.stream(key, chunk_size)

    async def open_read(self, key: str, chunk_size: int) -> OpenedObject:
        """Defined here, not left to ``__getattr__``: the capability check must come first."""
        self._need("read", key)
        return await open_read(self._inner, key, chunk_size)

    async def read_metadata(self, key: str) -> dict[str, str]:
        self._need("read", key)
        return await self._inner.read_metadata(key)

    async def listed_facts(self, keys: Collection[str]) -> dict[str, ObjectFacts]:
        """Defined here, not left to ``__getattr__``: the capability check must come first."""
        self._need("read", next(iter(keys), ""))
        return await self._inner.listed_facts(keys)

    def list(self, prefix: str) -> AsyncIterator[ListedObject]:
        self._need("read", prefix)
        return self._inner.list(prefix)

    # -- writes -----------------------------------------------------------------------------------------
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, chunk_size: int, max_concurrency: int,
                         content_type: str | None = None, metadata: dict[str, str] | None = None) -> str | None:
        self._need("write", key)
        return await self._inner.put_stream(key, chunks, chunk_size=chunk_size, max_concurrency=max_concurrency,
                                            content_type=content_type, metadata=metadata)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str | None:
        self._need("write", key)
        return await self._inner.put_bytes(key, data, content_type=content_type)

    async def set_checksum(self, key: str, checksum: str) -> None:
        self._need("write", key)
        return await self._inner.set_checksum(key, checksum)

    async def delete(self, key: str) -> None:
        self._need("write", key)
        return await self._inner.delete(key)

    async def copy(self, source_key: str, dest_key: str) -> None:
        self._need("read", source_key)
        self._need("write", dest_key)
        return await self._inner.copy(source_key, dest_key)
