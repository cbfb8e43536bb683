"""Local files that appear whole or not at all.

Every file the engine writes (search NDJSON, items.parquet, locks, reports, published package files on
a local disk) is written to a unique temp name beside its destination, flushed to disk, then renamed
over it; the directory is synced so the rename survives a crash. On any error the temp file is removed
and the destination keeps its previous complete content: there is never a half-written file to read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """A temp path to write; it replaces ``destination`` only if the block succeeds."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(destination.parent)


@contextmanager
def atomic_open(destination: Path, mode: str = "wb") -> Iterator[IO]:
    """An open file whose content replaces ``destination`` only if the block succeeds."""
    with atomic_path(destination) as tmp, open(tmp, mode) as handle:
        yield handle


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
