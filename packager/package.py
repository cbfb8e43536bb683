"""Where each file of a package lives, relative to the package root.

A package is a prefix (a local folder or an object-store prefix) holding files that each appear
whole or not at all (see :mod:`packager.publish`). Partitioned packages put one such layout under
each partition's path. One run at a time writes a package: :func:`package_lease`.
"""

from __future__ import annotations

from dataclasses import dataclass

from packager.locations import Location


@dataclass(frozen=True)
class PackageLayout:
    """Relative paths of a package's files."""

    search_request: str = "search/request.json"
    search_items: str = "search/items.ndjson"
    items: str = "items.parquet"
    lock: str = "assets.lock.parquet"
    lock_failures: str = "lock-failures.parquet"
    relocated_items: str = "relocated/items.parquet"
    relocated_lock: str = "relocated/assets.lock.parquet"
    relocation_failures: str = "relocated/failures.parquet"
    validation_report: str = "validation/report.parquet"


LAYOUT = PackageLayout()


def package_file(root: Location, relative: str) -> Location:
    return root.child(relative)


def package_lease(root: Location, registry, *, command: str, break_lease: bool = False, wait: float = 0.0,
                  ttl: float | None = None):
    """``with package_lease(root, registry, command="build"):`` one writer of the package at a time.

    Hold it around everything a command or asset publishes into the package (see :mod:`packager.lease`);
    :func:`packager.publish.publish` refuses to publish once it was lost. A second run raises
    :class:`packager.lease.LeaseHeld` naming the holder.
    """
    from packager.lease import hold

    return hold(root, registry, command=command, break_lease=break_lease, wait=wait, ttl=ttl)
