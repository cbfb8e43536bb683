"""The facts of fresh copies, observed for many at once: one listing instead of a HEAD per copy.

A copy's bytes are proven by the upload (the store's MD5 ETag equals the MD5 of the bytes read, or
``verify="size"``), but the new lock also records what the store now says of the object: its size, ETag
and Last-Modified, which no PUT response carries. A HEAD per copy asks for them one by one: for objects of
1 MiB that is a third of a copy's requests, and on SeaweedFS more server CPU than the GET's body. Where a
store lists exactly HEAD's facts (S3, :meth:`~packager.stores.obstore_backend.ObstoreStore.listed_facts`),
the relocation holds up to :data:`WINDOW` such copies, in lock order, and observes them with one ranged
listing; the keys the listing did not reach are HEADed as before. What is observed is checked as a HEAD
would be: the size that was sent, and the ETag the upload answered with (another ETag means someone wrote
there since).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from packager.errors import ObjectNotFound, StoreError
from packager.locations import Location
from packager.lock import LockRow
from packager.retry import with_retries
from packager.stores import ObjectFacts, Store

#: copies awaiting their facts before one listing observes them all (a page of ListObjectsV2)
WINDOW = 1000


@dataclass(frozen=True, slots=True)
class Unverified:
    """A copy whose bytes are proven and whose facts are still to be observed."""

    row: LockRow
    dest: Location
    size: int
    #: the ETag the upload answered with (None when the store gave none)
    put_etag: str | None
    checksum: str


def lists_head_facts(store: Store) -> bool:
    """Whether ``store`` can observe copies by listing (:func:`observe`); others are HEADed one by one."""
    return bool(getattr(store, "lists_head_facts", False))


async def observe(store: Store, copies: list[Unverified], *, concurrency: int,
                  attempts: int) -> list[ObjectFacts | StoreError]:
    """Each copy's facts, or the error that fails its row (a wrong size or ETag deletes the copy)."""
    if not copies:
        return []
    keys = [copy.dest.key.lstrip("/") for copy in copies]
    try:
        listed, _ = await with_retries(lambda: store.listed_facts(keys), attempts=attempts)
    except StoreError:
        listed = {}  # the HEADs below give each row its own answer, or its own error
    slots = asyncio.Semaphore(concurrency)

    async def one(copy: Unverified, key: str) -> ObjectFacts | StoreError:
        facts = listed.get(key)
        try:
            if facts is None:
                async with slots:
                    facts, _ = await with_retries(lambda: store.head(copy.dest.key), attempts=attempts)
            problem = _problem(copy, facts)
            if problem:
                async with slots:
                    await store.delete(copy.dest.key)
                return StoreError(f"{copy.dest}: destination {problem}; deleted it", href=copy.dest.href())
        except ObjectNotFound:
            return StoreError(f"{copy.dest}: the copy was gone right after its upload completed; "
                              "another process deletes in the target", href=copy.dest.href())
        except StoreError as exc:
            return exc
        return facts

    return list(await asyncio.gather(*(one(copy, key) for copy, key in zip(copies, keys, strict=True))))


def _problem(copy: Unverified, facts: ObjectFacts) -> str | None:
    if facts.size != copy.size:
        return f"has {facts.size} bytes, expected {copy.size}"
    if copy.put_etag and facts.etag and facts.etag.strip('"') != copy.put_etag.strip('"'):
        return (f"has ETag {facts.etag}, not the {copy.put_etag} its upload answered: written over since "
                "(another process writes in the target)")
    return None
