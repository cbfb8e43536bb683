"""Facts of local files straight from ``stat(2)``, exactly as obstore's ``LocalStore`` reports them.

Why not just ``obstore.head``: each call is a round trip into obstore's tokio runtime and back (a thread
hand-off, then a wake-up of the asyncio loop through its self-pipe), ~100 µs of CPU per file, and a
100,000-file validation spent most of its time there. A ``stat`` costs ~2 µs. Files whose ``stat`` is
that fast (the kernel's caches: a local disk, a warm NFS attribute cache) are stat'ed in the event loop's
own thread, a slice at a time; as soon as a slice is slow (a cold disk, a remote filesystem) the rest go
to worker threads, so slow filesystems still get parallel requests. Worker threads are not the default:
each ``stat`` releases the GIL and takes it back, and while the loop thread runs Python code each
taking-back waits for it, so the threads spent more time waiting than stat'ing.

object_store (under obstore) names a local file's version ``{inode:x}-{mtime in µs:x}-{size:x}`` and
takes last-modified from the mtime; both are rebuilt here the same way, and
``tests/unit/test_local_facts.py`` pins that they agree with ``obstore.head`` for the same files, so a
lock made by either path (or by stacpkg, which uses obstore) validates the same under the other.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from packager.stores.base import ObjectFacts

#: files stat'ed per worker-thread call: large enough to amortise the hand-off, small enough to spread
STAT_BATCH = 512
#: files stat'ed in the loop's thread before it lets other tasks run and looks at how long they took
INLINE_SLICE = 128
#: a ``stat`` slower than this waited for a disk or a server (the kernel's caches answer in ~2 µs); a slice
#: with more than a quarter of such stats goes on in threads. Counting slow stats, not timing the slice,
#: keeps a busy machine (the loop thread preempted for a few ms) from passing for a slow filesystem.
SLOW_STAT_SECONDS = 50e-6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: a '.' or '..' path segment
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)").search


def plain_key(key: str) -> bool:
    """Whether ``key`` is a path obstore would accept as is (no empty, ``.`` or ``..`` segment).

    Other keys go through obstore, so its own error for them stays the one the user sees."""
    if not key or "//" in key:
        return False
    may_have_dots = key[0] == "." or "/." in key  # cheap: the regex runs only when a segment starts with '.'
    return not (may_have_dots and _DOT_SEGMENT(key))


def stat_facts(path: str) -> ObjectFacts:
    """The facts of the file at ``path``; a directory is not an object (``FileNotFoundError``, as obstore)."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise FileNotFoundError(f"Object at location {path} not found: is directory")
    micros = st.st_mtime_ns // 1000
    # runs once per file, so: '%x' formatting (half the cost of an f-string's ':x'), positional arguments,
    # and exact integer arithmetic for the time (fromtimestamp of a float can round the last digit), 3x
    # cheaper than fromtimestamp(seconds).replace(microsecond=...)
    etag = "%x-%x-%x" % (st.st_ino, micros, st.st_size)  # noqa: UP031
    return ObjectFacts(st.st_size, etag, _EPOCH + timedelta(0, 0, micros))


def _stat_all(paths: list[str]) -> list[ObjectFacts | OSError]:
    return _stat_counting_slow(paths)[0]


def _stat_counting_slow(paths: list[str]) -> tuple[list[ObjectFacts | OSError], int]:
    """Facts or error per path, and how many stats took longer than :data:`SLOW_STAT_SECONDS`."""
    out: list[ObjectFacts | OSError] = []
    slow = 0
    clock = time.perf_counter
    for path in paths:
        started = clock()
        try:
            out.append(stat_facts(path))
        except OSError as exc:
            out.append(exc)
        slow += clock() - started > SLOW_STAT_SECONDS
    return out, slow


async def _stat_inline(paths: list[str]) -> list[ObjectFacts | OSError]:
    """Stat ``paths`` in this thread, slice by slice, while stats are fast; the rest after a slow slice is
    left undone."""
    out: list[ObjectFacts | OSError] = []
    slice_size = INLINE_SLICE // 4  # a small first probe: a slow filesystem blocks the loop for little
    while len(out) < len(paths):
        facts, slow = _stat_counting_slow(paths[len(out):len(out) + slice_size])
        out.extend(facts)
        if slow * 4 > len(facts):
            break
        slice_size = INLINE_SLICE
        await asyncio.sleep(0)  # other tasks (HEADs of other stores) run between slices
    return out


async def _stat_threaded(paths: list[str]) -> list[ObjectFacts | OSError]:
    """Stat ``paths`` in worker threads, :data:`STAT_BATCH` per call, all batches at once."""
    batches = [paths[i:i + STAT_BATCH] for i in range(0, len(paths), STAT_BATCH)]
    results = await asyncio.gather(*(asyncio.to_thread(_stat_all, batch) for batch in batches))
    return [facts for batch in results for facts in batch]


async def stat_many(paths: list[str], translate: Callable[[OSError, str], BaseException]
                    ) -> list[ObjectFacts | BaseException]:
    """Facts or a translated error per path, in order: in this thread while stats are fast, else in threads."""
    facts = await _stat_inline(paths)
    if len(facts) < len(paths):
        facts.extend(await _stat_threaded(paths[len(facts):]))
    return [translate(f, p) if isinstance(f, OSError) else f for p, f in zip(paths, facts, strict=True)]
