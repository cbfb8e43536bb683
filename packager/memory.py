"""Keep freed copy buffers from piling up in the C heap, so a relocation's memory limit holds in RSS too.

Relocation moves data in multi-MiB buffers allocated and freed by several threads (obstore's tokio
workers, the hashing thread, the event loop). glibc raises its mmap threshold dynamically up to 32 MiB,
so freed buffers stay in per-thread heaps instead of going back to the kernel, and each thread may get
its own arena. Pinning the threshold and capping arenas stops that: measured on 8 x 256 MiB S3 -> S3 with
a 64 MiB limit, peak RSS fell from 299 to 244 MiB at the same throughput (threshold 1 MiB).

The threshold sits at 4 MiB, between a relocation's reads (at most 1 MiB,
:attr:`~packager.relocate.RelocationSettings.read_size`) and its parts (at least 5 MiB): parts are mmap'd
and go back to the kernel when freed, reads reuse heap memory instead of a fresh mapping (and its page
faults) each. Against 1 MiB, relocating 2,000 x 1 MiB took 1.0 s less system CPU (3.8 -> 2.8 s), and the
8 x 256 MiB at 64 MiB peaked at 153 MiB instead of 150. Only glibc has ``mallopt``; elsewhere this does
nothing.
"""

from __future__ import annotations

import functools
import os

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20
ARENA_MAX = 2


@functools.cache
def bound_heap_growth() -> bool:
    """Apply the allocator settings once per process; True when they took effect.

    ``mallopt`` is looked up in the process's own symbols (libc is loaded): ``ctypes.util.find_library``
    would run ``ldconfig`` in a subprocess, and importing ctypes at all is left to the jobs that call this.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_ARENA_MAX, ARENA_MAX))


#: what :func:`prefer_system_arrow_allocator` sets, unless the environment already chose
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def prefer_system_arrow_allocator() -> None:
    """Ask pyarrow (when it is first imported) to allocate with the C library's malloc, not mimalloc.

    mimalloc keeps freed pages mapped in per-thread segments, so reading a lock batch by batch in arrow's
    decoder threads grows RSS far beyond what arrow holds (its ``max_memory`` stays under 10 MiB).
    Measured on a 100,000-row lock validation: peak RSS 241 MiB with mimalloc, 191 MiB with the system
    allocator, at the same speed; our tables are small batches where mimalloc's speed does not show.
    Only the environment variable works: once pyarrow has started mimalloc, ``pa.set_memory_pool`` no
    longer returns its pages. A value the user set is kept; if pyarrow was imported first, nothing changes.
    """
    os.environ.setdefault(ARROW_POOL_VARIABLE, "system")
