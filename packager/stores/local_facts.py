"""Facts of local files straight from ``stat(2)``, exactly as obstore's ``LocalStore`` reports them.

Why not just ``obstore.head``: each call is a round trip into obstore's tokio runtime and back (a thread
hand-off, then a wake-up of the asyncio loop through its self-pipe), ~100 µs of CPU per file, and a
100,000-file validation spent most of its time there. A ``stat`` costs ~2 µs, and batches of them run in
worker threads so a slow filesystem (NFS) still gets parallel requests.

object_store (under obstore) names a local file's version ``{inode:x}-{mtime in µs:x}-{size:x}`` and
takes last-modified from the mtime; both are rebuilt here the same way, and
``tests/unit/test_local_facts.py`` pins that they agree with ``obstore.head`` for the same files, so a
lock made by either path (or by stacpkg, which uses obstore) validates the same under the other.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime

from packager.stores.base import ObjectFacts

#: files stat'ed per worker-thread call: large enough to amortise the hand-off, small enough to spread
STAT_BATCH = 512


def plain_key(key: str) -> bool:
    """Whether ``key`` is a path obstore would accept as is (no empty, ``.`` or ``..`` segment).

    Other keys go through obstore, so its own error for them stays the one the user sees."""
    return bool(key) and "//" not in key and not any(part in (".", "..") for part in key.split("/"))


def stat_facts(path: str) -> ObjectFacts:
    """The facts of the file at ``path``; a directory is not an object (``FileNotFoundError``, as obstore)."""
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise FileNotFoundError(f"Object at location {path} not found: is directory")
    micros = st.st_mtime_ns // 1000
    seconds, rest = divmod(micros, 1_000_000)  # exact: fromtimestamp of a float can round the last digit
    return ObjectFacts(size=st.st_size, etag=f"{st.st_ino:x}-{micros:x}-{st.st_size:x}",
                       last_modified=datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest))


def _stat_all(paths: list[str]) -> list[ObjectFacts | OSError]:
    out: list[ObjectFacts | OSError] = []
    for path in paths:
        try:
            out.append(stat_facts(path))
        except OSError as exc:
            out.append(exc)
    return out


async def stat_many(paths: list[str], translate: Callable[[OSError, str], BaseException]
                    ) -> list[ObjectFacts | BaseException]:
    """Facts or a translated error per path, in order; batches of :data:`STAT_BATCH` in worker threads."""
    batches = [paths[i:i + STAT_BATCH] for i in range(0, len(paths), STAT_BATCH)]
    results = await asyncio.gather(*(asyncio.to_thread(_stat_all, batch) for batch in batches))
    out: list[ObjectFacts | BaseException] = []
    for batch, facts in zip(batches, results, strict=True):
        out.extend(translate(f, p) if isinstance(f, OSError) else f for p, f in zip(batch, facts, strict=True))
    return out
