"""Streaming digests: sha256 multihash, and the MD5 ETag an S3-compatible store derives from the same bytes."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from packager.checksum import StreamDigest, is_sha256_multihash, sha256_multihash_of

PART = 5 << 20


def _digest(chunks: list[bytes], part_size: int | None = PART) -> StreamDigest:
    digest = StreamDigest(part_size=part_size)

    async def feed() -> None:
        for chunk in chunks:
            await digest.update(chunk)

    asyncio.run(feed())
    return digest


def _multipart_etag(data: bytes, part: int) -> str:
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"


@pytest.mark.parametrize("size", [0, 3, PART - 1, PART, PART + 1, 2 * PART, 2 * PART + 17])
@pytest.mark.parametrize("chunk", [1 << 20, 3_000_001, 8 << 20])
def test_s3_etag_matches_single_put_and_multipart_rules(size, chunk):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    digest = _digest([data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""])
    expected = hashlib.md5(data).hexdigest() if size <= PART else _multipart_etag(data, PART)
    assert digest.s3_etag() == expected
    assert digest.multihash() == sha256_multihash_of(data) and digest.size == size


def test_no_part_size_no_etag_prediction():
    digest = _digest([b"abc"], part_size=None)
    assert digest.s3_etag() is None and is_sha256_multihash(digest.multihash())
