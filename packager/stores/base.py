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


@runtime_checkable
class Store(Protocol):
    """An object store bound to one bucket/container (or host, or the local filesystem).

    Keys are relative to that binding. ``describe`` names the store in messages, without secrets.
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
