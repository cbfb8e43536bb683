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
#: chunks at least this big are hashed in a worker thread (hashlib releases the GIL), so hashing
#: one object does not stall the event loop that drives the others
THREAD_HASH_THRESHOLD = 1 << 20


def multihash_sha256(digest: bytes) -> str:
    return SHA256_PREFIX + digest.hex()


def sha256_multihash_of(data: bytes) -> str:
    return multihash_sha256(hashlib.sha256(data).digest())


def is_sha256_multihash(value: str | None) -> bool:
    return bool(value) and value.startswith(SHA256_PREFIX) and len(value) == 68


class StreamDigest:
    """Counts and hashes the chunks that pass through :meth:`tap`."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    async def update(self, chunk: bytes) -> None:
        if len(chunk) >= THREAD_HASH_THRESHOLD:
            await asyncio.to_thread(self._hash.update, chunk)
        else:
            self._hash.update(chunk)
        self.size += len(chunk)

    async def tap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await self.update(chunk)
            yield chunk

    def multihash(self) -> str:
        return multihash_sha256(self._hash.digest())


async def checksum_stream(chunks: AsyncIterator[bytes]) -> tuple[int, str]:
    """(size, sha256 multihash) of a stream, holding one chunk at a time."""
    digest = StreamDigest()
    async for chunk in chunks:
        await digest.update(chunk)
    return digest.size, digest.multihash()
