"""Where packages live and where their assets are relocated to, plus the engine policies of this deployment."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from packager.locations import Location
from packager.package import LAYOUT, package_lease
from packager.publish import fetch, package_location, publish
from packager.stores import StoreRegistry
from packager.templates import DEFAULT_TEMPLATE


class PackageResource(dg.ConfigurableResource):
    """A package root (local folder or object-store prefix) and the relocation target.

    The lock, relocation and validation settings here are the deployment's defaults; a run's asset
    config can override them.
    """

    url: str = Field(description="Package root: a path, 'file:///abs/dir' or 's3://bucket/prefix'.")
    relocation_target: str = Field(description="Where relocated objects go: a path or 's3://bucket/prefix'.")
    key_template: str = Field(default=DEFAULT_TEMPLATE, description="Destination key under the target.")
    alternate_name: str = Field(default="mirror", description="Name of the alternate href added to items.")
    checksum: bool = Field(default=False, description="Lock with sha256 of every object (reads all bytes).")
    exclude_asset_keys: list[str] = Field(default_factory=list, description="Asset keys not to lock.")
    include_asset_keys: list[str] | None = Field(default=None, description="Only these asset keys, when set.")
    lock_concurrency: int = 32
    relocation_concurrency: int = 16
    memory_limit_mib: int = Field(default=256, description="Bytes in flight across all copies, in MiB.")
    chunk_size_mib: int = 8
    put_concurrency: int = 4
    verify: Literal["size", "checksum"] = "checksum"
    deep_validation: bool = Field(default=False, description="Re-read every object to compare sha256.")
    workdir: str | None = Field(default=None, description="Local scratch folder; a temp dir when unset.")
    lease_wait_seconds: float = Field(
        default=300.0, description="How long a step waits for another run's lease on the same package before "
                                   "failing (a crashed run's lease expires by itself).")

    def root(self, registry: StoreRegistry, partition: str | None = None) -> Location:
        root = package_location(self.url, registry)
        return root.child(f"partitions/{partition}") if partition else root

    def target(self, registry: StoreRegistry, partition: str | None = None) -> Location:
        target = package_location(self.relocation_target, registry)
        return target.child(partition) if partition else target

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A local folder for one step's files, removed afterwards (outputs are published first)."""
        base = Path(self.workdir) if self.workdir else Path(tempfile.gettempdir()) / "stac-packager"
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="step-", dir=base) as path:
            yield Path(path)

    @contextmanager
    def writing(self, root: Location, registry: StoreRegistry, step: str) -> Iterator[Path]:
        """A scratch folder for one step, with the package's lease held while the step reads and publishes.

        Two runs of the same package (say a scheduled run and a backfill of the same day) then take turns
        step by step instead of interleaving their files (see :mod:`packager.lease`)."""
        with package_lease(root, registry, command=step, wait=self.lease_wait_seconds), self.scratch() as scratch:
            yield scratch

    def fetch(self, root: Location, relative: str, registry: StoreRegistry, scratch: Path) -> Path:
        return fetch(root.child(relative), registry, scratch / Path(relative).parent)

    def publish(self, local: Path, root: Location, relative: str, registry: StoreRegistry,
                content_type: str | None = None) -> str:
        return publish(local, root.child(relative), registry, content_type=content_type)


__all__ = ["LAYOUT", "PackageResource"]
