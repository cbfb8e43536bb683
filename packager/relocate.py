"""Copy every locked object into storage the user controls, verified, resumable, in bounded memory.

For each lock row, in order:

1. Take the source's facts and compare them with the lock: bytes that changed since they were locked
   are not copied (the lock is the contract), the row fails instead. When the target listing shows
   nothing at the destination, the facts come from the response of the GET that streams the bytes
   (:func:`~packager.stores.base.open_read`); otherwise from a HEAD, as the steps below may not need
   the bytes at all.
2. HEAD the destination if the listing shows something there. If an object is there with the same
   size and the same sha256 (from the object's metadata when the store keeps it, else by reading it),
   it is kept: a re-run resumes and does not rewrite, so earlier locks of the destination stay valid.
3. Otherwise stream source -> destination through a sha256 tap. Multipart uploads become visible
   only when complete; local files are written to a temp name and renamed. Same-store pairs use a
   server-side copy.
4. Verify the destination: its content (``verify="checksum"``, the default) by the MD5 ETag the store
   computed from what it received, when it equals the MD5 of the bytes read (the source's own MD5 ETag
   for a single PUT, else computed while streaming), or else by reading the copy back and comparing
   sha256; and its size, with the facts the new lock records (no write response carries
   Last-Modified), from a HEAD, or on S3 from one listing per window of up to 1,000 such copies
   (:mod:`packager.copy_facts`). A mismatch deletes the destination object and fails the row.

Crashes and concurrent runs: the relocation holds the target's lease (:mod:`packager.lease`) while it
works, so a second run into the same target stops at once with a message naming the holder; with the
lease held, and before its own first upload, it removes the incomplete uploads a killed run left under
the target (:mod:`packager.cleanup`). A streamed copy checks size and sha256 against the lock *before*
the upload completes (the last chunk is withheld until they match), so a destination object never
appears at its final key with bytes other than the locked ones, whenever the process dies.

Memory: every copy reserves ``min(size, chunk) x (parts in flight + 2)`` bytes from one
:class:`~packager.concurrency.MemoryBudget` before it starts (sources are read in chunks of at most
1 MiB so that this covers the reads too, see :attr:`RelocationSettings.read_size`), so the total in
flight never exceeds ``memory_limit``. Failed rows go to a failures table, never into the new lock; all rows are
attempted before the caller learns that some failed.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packager import copy_facts, lease
from packager.checksum import StreamDigest, checksum_stream
from packager.cleanup import CleanupSummary, cleanup_incomplete
from packager.concurrency import MemoryBudget, ordered_map
from packager.errors import (
    ROW_ERRORS,
    ConfigError,
    ObjectNotFound,
    StoreError,
    TemplateError,
    TransientStoreError,
)
from packager.locations import Location
from packager.lock import Failure, LockRow, count_rows, failure_of, iter_lock, lock_writer, write_failures
from packager.memory import bound_heap_growth
from packager.retry import with_retries
from packager.stores import ObjectFacts, Store, StoreRegistry
from packager.stores.base import open_read
from packager.stores.obstore_backend import CHECKSUM_METADATA
from packager.templates import DEFAULT_TEMPLATE, KeyTemplate, plan_keys

MiB = 1 << 20
#: bounds of :attr:`RelocationSettings.read_size`; reads are hashed in place (below
#: :data:`~packager.checksum.THREAD_HASH_THRESHOLD`); 8 x 256 MiB took ~6 % more CPU than with 8 MiB reads
MAX_READ_SIZE = 1 * MiB
MIN_READ_SIZE = 64 << 10


@dataclass(frozen=True)
class RelocationSettings:
    """How hard to push: copies in flight, bytes in flight, part size, verification, retries."""

    concurrency: int = 16
    memory_limit: int = 256 * MiB
    chunk_size: int = 8 * MiB
    put_concurrency: int = 4
    verify: Literal["size", "checksum"] = "checksum"
    attempts: int = 4
    key_template: str = DEFAULT_TEMPLATE
    #: hold the target's lease while relocating (see :mod:`packager.lease`)
    lease: bool = True
    #: lease ttl in seconds (None: ``STAC_PACKAGER_LEASE_TTL`` or 120 s)
    lease_ttl: float | None = None
    #: take over the target's lease even from a holder that looks alive (``--break-lease``)
    break_lease: bool = False
    #: seconds to wait for a held lease before failing (0: fail at once)
    lease_wait: float = 0.0
    #: remove incomplete uploads left under the target by killed runs (see :mod:`packager.cleanup`)
    cleanup: bool = True

    def reservation(self, size: int) -> int:
        """Bytes one copy of ``size`` bytes may hold: the parts in flight, the one filling, the reads.

        A multipart upload holds ``put_concurrency`` parts in flight and fills the next one; the reads
        before it (one arriving, one being hashed, one held back) and the read each part boundary splits
        (alive until both of its parts are sent) add ``(put_concurrency + 3)`` x :attr:`read_size`,
        which :attr:`read_size` keeps within one part: ``parts + 2`` units in all. A single PUT holds the
        object and a read or two."""
        unit = max(1, min(size, self.chunk_size))
        parts = max(1, min(self.put_concurrency, math.ceil(size / self.chunk_size) if size else 1))
        return unit * (parts + 2)

    @property
    def read_size(self) -> int:
        """Bytes per chunk read from a source, small enough for :meth:`reservation` to bound.

        Part-sized reads held several parts more than reserved: 8 x 256 MiB S3 -> S3 at a 64 MiB limit
        (8 MiB parts, 4 in flight, 48 MiB reserved) peaked at 195 MiB RSS with 8 MiB reads, 154-159 MiB
        with 1 MiB reads."""
        return max(MIN_READ_SIZE, min(MAX_READ_SIZE, self.chunk_size // (self.put_concurrency + 3)))

    def check(self) -> None:
        needed = self.reservation(self.chunk_size * self.put_concurrency)
        if self.memory_limit < needed:
            raise ConfigError(
                f"memory_limit {self.memory_limit} B is below one streaming copy ({needed} B = chunk_size "
                f"{self.chunk_size} x (put_concurrency {self.put_concurrency} + 2)); raise memory_limit or "
                "lower chunk_size / put_concurrency"
            )
        if self.chunk_size < 5 * MiB:
            raise ConfigError("chunk_size must be at least 5 MiB: S3 multipart parts (but the last) need it")


@dataclass(slots=True)
class RelocationSummary:
    rows: int = 0
    copied: int = 0
    present: int = 0
    server_side: int = 0
    bytes_copied: int = 0
    bytes_total: int = 0
    retries: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    peak_reserved_bytes: int = 0
    #: how copies were verified: "store-md5" (the store's MD5 ETag of what it received), "read-back"
    #: (sha256 of the destination read again), "size" (size only, verify="size")
    verified: dict[str, int] = field(default_factory=dict)
    #: incomplete uploads of killed runs removed before copying (None: clean-up off)
    cleanup: CleanupSummary | None = None
    #: the lease this run took over from a dead or expired holder, if any (its description)
    lease_taken_over: str | None = None

    @property
    def throughput(self) -> float:
        return self.bytes_copied / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class _Outcome:
    row: LockRow
    status: Literal["copied", "present", "server_side"]
    bytes_moved: int
    retries: int = 0
    verified: str | None = None
    #: a copy whose facts are observed with its window's (:mod:`packager.copy_facts`); ``row`` is the source's
    unverified: copy_facts.Unverified | None = None


async def _settled(window: list[_Outcome | Failure], dest_store: Store,
                   settings: RelocationSettings) -> list[_Outcome | Failure]:
    """The window's results with every unverified copy observed: its row, or the failure of its row."""
    waiting = [r for r in window if isinstance(r, _Outcome) and r.unverified is not None]
    observed = await copy_facts.observe(dest_store, [r.unverified for r in waiting], concurrency=settings.concurrency,
                                        attempts=settings.attempts)
    settled: dict[int, _Outcome | Failure] = {}
    for outcome, facts in zip(waiting, observed, strict=True):
        copy = outcome.unverified
        if isinstance(facts, StoreError):
            settled[id(outcome)] = failure_of(copy.row, "relocate", facts)
        else:
            outcome.row, outcome.unverified = _relocated(copy.row, copy.dest, facts, copy.checksum), None
    return [settled.get(id(result), result) for result in window]


def relocate(lock_path: Path, target: Location, registry: StoreRegistry, out_lock: Path, failures_path: Path,
             settings: RelocationSettings = RelocationSettings(),
             progress: Callable[[int, int], None] | None = None) -> RelocationSummary:
    """Relocate every row of ``lock_path`` under ``target``; write the new lock and the failures table.

    Raises :class:`~packager.errors.TemplateError` before copying if the template is unusable.
    Returns a summary whose ``failures`` the caller turns into a failed run.
    """
    settings.check()
    bound_heap_growth()
    # keystore capabilities first: a read-only target key (or a source key that cannot read) fails here,
    # before any byte is copied
    registry.check_writable(target, "relocation target; nothing was copied")
    template = KeyTemplate(settings.key_template)
    planned = plan_relocation(lock_path, target, template)
    _check_capabilities(registry, [dest for _, dest in planned], "write", "relocation target; nothing was copied")
    _check_capabilities(registry, [row.location for row, _ in planned], "read",
                        "relocation source; nothing was copied")
    held = None
    if settings.lease:
        held = lease.acquire(target, registry, command="relocate", ttl=settings.lease_ttl,
                             break_lease=settings.break_lease, wait=settings.lease_wait)
    try:
        summary = asyncio.run(_relocate(lock_path, target, registry, out_lock, failures_path, settings, template,
                                        progress, held, {dest.key for _, dest in planned}))
        if held is not None:
            held.check(fresh=True)  # the new lock describes the target only if no one else wrote there meanwhile
            if held.took_over is not None:
                summary.lease_taken_over = held.took_over.describe()
        return summary
    finally:
        if held is not None:
            held.release()


def plan_relocation(lock_path: Path, target: Location, template: KeyTemplate) -> list[tuple[LockRow, Location]]:
    """Every lock row with its destination, or one error for the whole batch before any byte moves.

    Refused: keys that escape the target or collide (:func:`~packager.templates.plan_keys`), and any
    destination that is another row's source (stacpkg overwrote sources so: its defect 6). A row copied
    onto its own source is allowed: it comes back as present.
    """
    planned = [(row, target.child(key)) for row, key in plan_keys(iter_lock(lock_path), template, target)]
    sources: dict[tuple, set[str]] = {}
    for row, _ in planned:
        sources.setdefault((row.location.store_identity(), row.location.key), set()).add(row.label())
    clobbered = [f"{row.label()} -> {dest} is the source of {', '.join(sorted(sources[ident]))}"
                 for row, dest in planned
                 if (ident := (dest.store_identity(), dest.key)) in sources and row.label() not in sources[ident]]
    if clobbered:
        raise TemplateError(f"{len(clobbered)} destination(s) would overwrite the source of another asset, nothing "
                            "was copied: " + "; ".join(clobbered[:5]) + ". Choose a target outside the sources.")
    return planned


def _check_capabilities(registry: StoreRegistry, locations: list[Location], capability: str, what: str) -> None:
    """One check per storage profile involved (a keystore key without ``capability`` refuses the batch)."""
    seen: dict[str | None, Location] = {}
    for location in locations:
        profile = registry.profile_for(location)
        seen.setdefault(profile.name if profile else None, location)
    for location in seen.values():
        registry.check_capability(location, capability, what)


async def _relocate(lock_path, target, registry, out_lock, failures_path, settings, template, progress,
                    held: lease.Lease | None = None, planned_keys: set[str] | None = None):
    summary = RelocationSummary()
    started = time.perf_counter()
    budget = MemoryBudget(settings.memory_limit)
    slots = asyncio.Semaphore(settings.concurrency)
    dest_store = registry.store_for(target)
    if settings.cleanup:
        # under the lease, an unfinished upload to one of our keys that started before it was acquired is a
        # dead run's; anything else only when stale (it may be a run's under another lease, e.g. a sub-prefix)
        cutoff = held.server_acquired_at if held is not None else None
        summary.cleanup = await cleanup_incomplete(dest_store, target, cutoff, planned_keys or set())
    present = await _present_keys(dest_store, target.key)

    async def one(row: LockRow) -> _Outcome | Failure:
        dest = target.child(template.render(row))

        async def copy_once() -> _Outcome:
            async with slots:
                if held is not None:
                    held.check()  # lost the lease: stop copying (LeaseLost ends the run)
                return await _copy_one(row, dest, registry, dest_store, settings, budget, present)

        try:
            outcome, retries = await with_retries(copy_once, attempts=settings.attempts)
            outcome.retries = retries
            return outcome
        except ROW_ERRORS as exc:
            return failure_of(row, "relocate", exc, attempts=getattr(exc, "attempts_made", 1))

    total = count_rows(lock_path)
    window: list[_Outcome | Failure] = []  # results in lock order, held while copies in it await their facts
    waiting = 0  # unverified copies in the window

    def account(result: _Outcome | Failure) -> None:
        summary.rows += 1
        if isinstance(result, Failure):
            summary.failures.append(result)
        else:
            writer.write(result.row.as_record())
            summary.bytes_total += result.row.size or 0
            summary.retries += result.retries
            if result.status == "present":
                summary.present += 1
            else:
                summary.copied += 1
                summary.bytes_copied += result.bytes_moved
                summary.server_side += result.status == "server_side"
                summary.verified[result.verified] = summary.verified.get(result.verified, 0) + 1
        if progress:
            progress(summary.rows, total)

    async def settle_window() -> None:
        nonlocal waiting
        for result in await _settled(window, dest_store, settings):
            account(result)
        window.clear()
        waiting = 0

    with lock_writer(out_lock) as writer:
        async for result in ordered_map(iter_lock(lock_path), one, in_flight=settings.concurrency * 4):
            if not window and not (isinstance(result, _Outcome) and result.unverified):
                account(result)
                continue
            window.append(result)
            waiting += isinstance(result, _Outcome) and result.unverified is not None
            if waiting >= copy_facts.WINDOW:
                await settle_window()
        await settle_window()
    write_failures(failures_path, summary.failures)
    summary.seconds = time.perf_counter() - started
    summary.peak_reserved_bytes = budget.peak_reserved
    return summary


async def _copy_one(row: LockRow, dest: Location, registry: StoreRegistry, dest_store: Store,
                    settings: RelocationSettings, budget: MemoryBudget, present: set[str] | None) -> _Outcome:
    source_store = registry.store_for(row.location)
    server_side = _same_store(row.location, dest, registry) and bool(row.checksum)
    if not server_side and row.size is not None and _known_absent(dest, present):
        # nothing at the destination to compare with: the source's facts come with its bytes (GET, no HEAD)
        return await _copy_streamed(row, None, source_store, dest, dest_store, settings, budget)
    facts = await source_store.head(row.location.key)
    _check_unchanged(row, facts)

    existing = None if _known_absent(dest, present) else await _head_or_none(dest_store, dest.key)
    if existing is not None and existing.size == facts.size:
        source_sum = row.checksum or await _checksum(source_store, row.location.key, settings, budget, facts.size)
        if await _stored_checksum(dest_store, dest.key, settings, budget, existing.size) == source_sum:
            await dest_store.set_checksum(dest.key, source_sum)
            return _Outcome(_relocated(row, dest, existing, source_sum), "present", 0)

    if not server_side:
        return await _copy_streamed(row, facts, source_store, dest, dest_store, settings, budget)
    await source_store.copy(row.location.key, dest.key)
    read_back = settings.verify == "checksum"
    final = await _verify(dest, dest_store, facts.size, row.checksum, settings, budget, read_back=read_back)
    return _Outcome(_relocated(row, dest, final, row.checksum), "server_side", facts.size,
                    verified="read-back" if read_back else "size")


def _known_absent(dest: Location, present: set[str] | None) -> bool:
    """Whether the target listing (see :func:`_present_keys`) shows nothing at ``dest``."""
    return present is not None and dest.key.lstrip("/") not in present


async def _copy_streamed(row: LockRow, facts: ObjectFacts | None, source_store: Store, dest: Location,
                         dest_store: Store, settings: RelocationSettings, budget: MemoryBudget) -> _Outcome:
    """Stream the source to ``dest`` and verify the copy; ``facts`` None: the GET supplies them."""
    facts, checksum, put_etag, server_md5_agrees = await _stream_copy(row, facts, source_store, dest, dest_store,
                                                                      settings, budget)
    read_back = settings.verify == "checksum" and not server_md5_agrees
    verified = "read-back" if read_back else "store-md5" if server_md5_agrees else "size"
    if not read_back and copy_facts.lists_head_facts(dest_store):
        # the bytes are proven; the facts for the new lock come from one listing of the window's copies
        return _Outcome(row, "copied", facts.size, verified=verified,
                        unverified=copy_facts.Unverified(row, dest, facts.size, put_etag, checksum))
    final = await _verify(dest, dest_store, facts.size, checksum, settings, budget, read_back=read_back)
    return _Outcome(_relocated(row, dest, final, checksum), "copied", facts.size, verified=verified)


def _check_unchanged(row: LockRow, facts: ObjectFacts) -> None:
    changed = []
    if row.size is not None and facts.size != row.size:
        changed.append(f"size {row.size} -> {facts.size}")
    if row.etag and facts.etag and facts.etag != row.etag:
        changed.append(f"etag {row.etag} -> {facts.etag}")
    if changed:
        raise StoreError(
            f"{row.location}: source changed since it was locked ({', '.join(changed)}); re-run the lock "
            "asset to lock the current bytes", href=row.href)


#: a target prefix holding more objects than this is not listed up front (memory); rows HEAD instead
MAX_LISTED_KEYS = 2_000_000


async def _present_keys(store: Store, prefix: str) -> set[str] | None:
    """Keys already under the target prefix, from one listing instead of a HEAD per row.

    Only absence is trusted: a listed object is still HEADed for its facts (a listing's timestamps can
    differ in precision from HEAD's, and the lock must hold what validation will observe). ``None``
    (list not allowed, too many keys) means every row HEADs its destination, as before.
    """
    keys: set[str] = set()
    try:
        async for listed in store.list(prefix.strip("/")):
            keys.add(listed.key.lstrip("/"))
            if len(keys) > MAX_LISTED_KEYS:
                return None
    except StoreError:
        return None
    return keys


async def _head_or_none(store: Store, key: str) -> ObjectFacts | None:
    try:
        return await store.head(key)
    except ObjectNotFound:
        return None


async def _reserved(budget: MemoryBudget, settings: RelocationSettings, size: int):
    amount = settings.reservation(size)
    await budget.acquire(amount)
    return amount


async def _checksum(store: Store, key: str, settings: RelocationSettings, budget: MemoryBudget, size: int) -> str:
    amount = await _reserved(budget, settings, min(size, settings.chunk_size))
    try:
        return (await checksum_stream(store.stream(key, settings.read_size)))[1]
    finally:
        await budget.release(amount)


async def _stored_checksum(store: Store, key: str, settings: RelocationSettings, budget: MemoryBudget,
                           size: int) -> str:
    """The destination's sha256: from its metadata when the store keeps it, else by reading it."""
    recorded = (await store.read_metadata(key)).get(CHECKSUM_METADATA)
    return recorded or await _checksum(store, key, settings, budget, size)


async def _stream_copy(row: LockRow, facts: ObjectFacts | None, source_store: Store, dest: Location,
                       dest_store: Store, settings: RelocationSettings,
                       budget: MemoryBudget) -> tuple[ObjectFacts, str, str | None, bool]:
    """Stream the source to the destination; (source facts, sha256 multihash, the upload's ETag, whether that
    ETag is the MD5 of the bytes read).

    ``facts`` None: the source is opened with one GET whose response gives its facts (checked against the
    lock before a byte is sent); the memory is reserved first, for the locked size, so a GET never waits
    for the budget with its response open. S3-compatible stores compute an MD5 ETag from the bytes they
    received (content MD5 for one PUT, ``md5(part md5s)-N`` for parts); when it equals the MD5 of the
    bytes read (see :func:`_source_md5`), the store holds exactly what was read, and reading it back
    again would only repeat that proof.
    """
    amount = await _reserved(budget, settings, facts.size if facts is not None else row.size or 0)
    digest: StreamDigest | None = None
    refused: list[str] = []
    try:
        facts, chunks = await _open_source(row, facts, source_store, settings)
        source_md5 = _source_md5(facts, settings)
        digest = StreamDigest(part_size=None if source_md5 else settings.chunk_size)
        metadata = {CHECKSUM_METADATA: row.checksum} if row.checksum else None
        put_etag = await dest_store.put_stream(
            dest.key, _checked(digest, chunks, row, facts, refused),
            chunk_size=settings.chunk_size, max_concurrency=settings.put_concurrency,
            content_type=row.media_type, metadata=metadata)
    except Exception:
        if refused and digest is not None and facts is not None:  # refused before the last chunk went out
            error = TransientStoreError if digest.size < facts.size else StoreError
            raise error(f"{row.location}: {refused[0]}; the upload to {dest} was abandoned before it "
                             "completed", href=row.href) from None
        raise
    finally:
        await budget.release(amount)
    problem = _mismatch(digest, row, facts)
    if problem:  # a store that completed anyway (it should not): remove what it holds
        await dest_store.delete(dest.key)
        raise StoreError(f"{row.location}: {problem}; the partial copy at {dest} was deleted", href=row.href)
    expected = source_md5 or digest.s3_etag()
    return facts, digest.multihash(), put_etag, bool(put_etag and expected and put_etag.strip('"').lower() == expected)


async def _open_source(row: LockRow, facts: ObjectFacts | None, source_store: Store,
                       settings: RelocationSettings) -> tuple[ObjectFacts, AsyncIterator[bytes]]:
    """The source's facts (checked against the lock) and its bytes: one GET when ``facts`` is None."""
    if facts is not None:
        return facts, source_store.stream(row.location.key, settings.read_size)
    opened = await open_read(source_store, row.location.key, settings.read_size)
    _check_unchanged(row, opened.facts)
    return opened.facts, opened.chunks


#: an ETag that is a plain MD5 (what S3-compatible stores give an object uploaded in one PUT)
_PLAIN_MD5 = re.compile(r'"?([0-9a-fA-F]{32})"?')


def _source_md5(facts: ObjectFacts, settings: RelocationSettings) -> str | None:
    """The MD5 the source's own store reports for the bytes read, when the copy can be compared with it.

    An object that goes up in one PUT gets the plain MD5 of its bytes as ETag; if the source's ETag (from
    the same response as the bytes) is a plain MD5 too, equal ETags prove the copy holds the source's
    bytes, and hashing MD5 here (~2 ms per MiB, twice sha256) only repeats what both stores computed. An
    ETag that merely looks like an MD5 (SSE-KMS objects, some web servers) cannot make a wrong copy pass:
    it differs from the copy's MD5, and the copy is then read back (``verify="checksum"``) as when MD5s
    differ. Multipart copies and other sources: None, the MD5s are computed while streaming.
    """
    if facts.size > settings.chunk_size or not facts.etag:
        return None
    plain = _PLAIN_MD5.fullmatch(facts.etag)
    return plain.group(1).lower() if plain else None


def _mismatch(digest: StreamDigest, row: LockRow, facts: ObjectFacts) -> str | None:
    if digest.size != facts.size:
        return f"read {digest.size} bytes, the source has {facts.size}"
    if row.checksum and digest.multihash() != row.checksum:
        return f"sha256 {digest.multihash()} differs from the locked {row.checksum}"
    return None


async def _checked(digest: StreamDigest, chunks: AsyncIterator[bytes], row: LockRow, facts: ObjectFacts,
                   refused: list[str]) -> AsyncIterator[bytes]:
    """The source's bytes through ``digest``; the final chunk is held back until size and sha256 match.

    Every store completes an upload (multipart Complete, SLO manifest, WebDAV MOVE, local rename) only
    after its byte stream ended: an error raised here, before the end, leaves nothing at the final key.
    The reason goes to ``refused`` (a store may report the stream's error as its own).
    """
    held: bytes | None = None
    async for chunk in digest.tap(chunks):
        if held is not None:
            yield held
        held = chunk
        if digest.size > facts.size:
            refused.append(f"read more than the {facts.size} bytes the source has")
            raise StoreError(refused[0], href=row.href)
    problem = _mismatch(digest, row, facts)
    if problem:
        refused.append(problem)
        if digest.size < facts.size:  # a body cut short: reading it again may well give all of it
            raise TransientStoreError(problem, href=row.href)
        raise StoreError(problem, href=row.href)
    if held is not None:
        yield held


async def _verify(dest: Location, dest_store: Store, size: int, checksum: str, settings: RelocationSettings,
                  budget: MemoryBudget, *, read_back: bool) -> ObjectFacts:
    """Size from a HEAD always; sha256 by reading the destination back when ``read_back``."""
    final = await dest_store.head(dest.key)
    problem = None
    if final.size != size:
        problem = f"has {final.size} bytes, expected {size}"
    elif read_back:
        observed = await _checksum(dest_store, dest.key, settings, budget, size)
        if observed != checksum:
            problem = f"reads back as sha256 {observed}, expected {checksum}"
    if problem:
        await dest_store.delete(dest.key)
        raise StoreError(f"{dest}: destination {problem}; deleted it", href=dest.href())
    await dest_store.set_checksum(dest.key, checksum)
    return final


def _same_store(source: Location, dest: Location, registry: StoreRegistry) -> bool:
    return (source.kind != "file" and source.store_identity() == dest.store_identity()
            and registry.profile_for(source) == registry.profile_for(dest))


def _relocated(row: LockRow, dest: Location, facts: ObjectFacts, checksum: str) -> LockRow:
    return LockRow(row.collection, row.item_id, row.asset_key, dest, dest.href(), row.media_type,
                   facts.size, facts.etag, facts.last_modified_iso(), checksum)
