"""Content checksums as STAC ``file:checksum`` spells them: a sha256 multihash in hex.

ETags are not content hashes (S3 multipart ETags are ``<md5 of part md5s>-N``, WebDAV ETags are
inode/mtime/size), so the engine computes its own while bytes stream past, never by buffering.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

#: multihash prefix: 0x12 = sha2-256, 0x20 = 32-byte digest
SHA256_PREFIX = "1220"
#: chunks bigger than a relocation's reads (1 MiB) are hashed in a worker thread (hashlib releases the GIL),
#: so hashing one 8 MiB part does not stall the event loop that drives the others for ~8 ms; a 1 MiB read
#: is hashed in place (~1 ms): relocating 2,000 x 1 MiB, the thread hand-offs cost more CPU than they saved
THREAD_HASH_THRESHOLD = 2 << 20


def multihash_sha256(digest: bytes) -> str:
    return SHA256_PREFIX + digest.hex()


def sha256_multihash_of(data: bytes) -> str:
    return multihash_sha256(hashlib.sha256(data).digest())


def is_sha256_multihash(value: str | None) -> bool:
    return bool(value) and value.startswith(SHA256_PREFIX) and len(value) == 68


class StreamDigest:
    """Counts and hashes the chunks that pass through :meth:`tap`.

    With ``part_size`` it also keeps the MD5 of each ``part_size`` slice, from which
    :meth:`s3_etag` predicts the ETag an S3-compatible store computes from the bytes it received:
    the content MD5 for a single PUT, ``md5(part md5s)-N`` for a multipart upload with those parts.
    """

    def __init__(self, part_size: int | None = None) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self._part_size = part_size
        self._part = hashlib.md5(usedforsecurity=False)
        self._part_filled = 0
        self._parts: list[bytes] = []

    async def update(self, chunk: bytes) -> None:
        if len(chunk) > THREAD_HASH_THRESHOLD:
            await asyncio.to_thread(self._update, chunk)
        else:
            self._update(chunk)

    def _update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        if self._part_size:
            view = memoryview(chunk)
            while view:
                piece = view[: self._part_size - self._part_filled]
                self._part.update(piece)
                self._part_filled += len(piece)
                view = view[len(piece):]
                if self._part_filled == self._part_size:
                    self._parts.append(self._part.digest())
                    self._part, self._part_filled = hashlib.md5(usedforsecurity=False), 0

    async def tap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await self.update(chunk)
            yield chunk

    def multihash(self) -> str:
        return multihash_sha256(self._hash.digest())

    def s3_etag(self) -> str | None:
        """The MD5-based ETag an S3-compatible store gives these bytes uploaded in ``part_size`` parts."""
        if not self._part_size:
            return None
        parts = self._parts + ([self._part.digest()] if self._part_filled or not self._parts else [])
        if self.size <= self._part_size:
            return parts[0].hex()
        return hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest() + f"-{len(parts)}"


async def checksum_stream(chunks: AsyncIterator[bytes]) -> tuple[int, str]:
    """(size, sha256 multihash) of a stream, holding one chunk at a time."""
    digest = StreamDigest()
    async for chunk in chunks:
        await digest.update(chunk)
    return digest.size, digest.multihash()
