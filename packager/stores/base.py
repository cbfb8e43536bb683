"""The one interface every storage backend implements, and the facts it reports.

Relocation and validation are written against :class:`Store` only, so S3, GCS, Azure, HTTP, local
files, Swift and WebDAV behave the same to them. All methods are async: one event loop drives
hundreds of requests with bounded concurrency instead of a thread per object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable

from packager.errors import TransientStoreError


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What a HEAD tells about a live object; what the lock records and validation compares."""

    size: int
    etag: str | None
    last_modified: datetime | None
    version: str | None = None

    def last_modified_iso(self) -> str | None:
        return self.last_modified.isoformat() if self.last_modified else None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date header (``Last-Modified``, WebDAV ``getlastmodified``) as an aware UTC datetime."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def short_read(href: str, read: int, expected: int) -> TransientStoreError:
    """A response body that ended before (or after) the length it announced, without a transport error.

    Every backend checks the bytes it streamed against the response's length, so a body cut short is
    never passed off as the whole object; it is transient: reading it again may well succeed."""
    return TransientStoreError(f"{href}: the response body ended after {read} of {expected} bytes (cut short); "
                               "reading it again may help", href=href)


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    facts: ObjectFacts


@dataclass(frozen=True, slots=True)
class OpenedObject:
    """An object's facts and its bytes, as one read observed them (see :func:`open_read`)."""

    facts: ObjectFacts
    #: the object's bytes in chunks of at least the requested size (but the last); read once
    chunks: AsyncIterator[bytes]


@runtime_checkable
class Store(Protocol):
    """An object store bound to one bucket/container (or host, or the local filesystem).

    Keys are relative to that binding. ``describe`` names the store in messages, without secrets.

    Optional, not part of this protocol (so every backend above still is a ``Store``), found by
    ``getattr``: ``open_read(key, chunk_size) -> OpenedObject``, an object's facts and its bytes from one
    request; callers go through :func:`open_read`, which falls back to :meth:`head` + :meth:`stream`.
    ``head_many`` (see :class:`~packager.stores.obstore_backend.ObstoreStore`) is optional the same way.
    """

    describe: str
    #: whether :meth:`put_stream` can attach user metadata (the content checksum) to an object
    keeps_metadata: bool

    async def head(self, key: str) -> ObjectFacts: ...

    async def get_range(self, key: str, start: int, end: int) -> bytes: ...

    async def get_ranges(self, key: str, starts: list[int], ends: list[int]) -> list[bytes]: ...

    def stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]: ...

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        chunk_size: int,
        max_concurrency: int,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str | None:
        """Write ``chunks`` to ``key`` so that the object appears whole or not at all; returns the ETag."""
        ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str | None: ...

    async def read_metadata(self, key: str) -> dict[str, str]:
        """User metadata of an object (``{}`` where the backend keeps none)."""
        ...

    async def set_checksum(self, key: str, checksum: str) -> None:
        """Record the content checksum beside the object where the backend allows it after the fact."""
        ...

    def list(self, prefix: str) -> AsyncIterator[ListedObject]: ...

    async def delete(self, key: str) -> None: ...

    async def copy(self, source_key: str, dest_key: str) -> None: ...


async def open_read(store: Store, key: str, chunk_size: int) -> OpenedObject:
    """The facts of ``key`` and a stream of its bytes: from one GET where the store offers ``open_read``.

    A GET's response carries the object's size, ETag and Last-Modified, so a HEAD before it is a second
    round trip for the same facts (for 1 MiB objects, a quarter of a copy's requests). Stores without it
    (Swift, WebDAV) HEAD and then stream, as before. Raises the store's typed errors (``ObjectNotFound``
    ...) before any byte is read; an unread stream may simply be dropped.
    """
    opener = getattr(store, "open_read", None)
    if opener is not None:
        return await opener(key, chunk_size)
    facts = await store.head(key)
    return OpenedObject(facts, store.stream(key, chunk_size))
