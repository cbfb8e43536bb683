"""What a partition searches besides its time window: its area (bbox or geometry) or its collection.

Static areas come from the settings file; dynamic ones from a YAML file (a path or URL, read through
the storage profiles) that maps names to areas, or lists collection ids. The same file feeds the
``sync_partitions`` sensor, which adds and removes the dynamic partitions.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import Field

from packager.errors import ConfigError
from packager.publish import fetch, package_location
from packager.search import GEOMETRY_TYPES
from packager.stores import StoreRegistry

#: partition names are path segments of the package (``partitions/<area>/<date>``) and Dagster keys
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_partition_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"partition name {name!r}: use letters, digits, '.', '_' and '-' (it becomes a path "
                         "segment of the package and a Dagster partition key)")
    return name


def parse_area(value: Any, name: str = "area") -> dict[str, Any]:
    """``{"bbox": [...]}`` or ``{"intersects": geometry}``: the search of one area."""
    if isinstance(value, list | tuple):
        if len(value) not in (4, 6) or not all(isinstance(v, int | float) for v in value):
            raise ValueError(f"area {name}: a bbox is 4 numbers [west, south, east, north] (or 6 with heights)")
        half = len(value) // 2
        if value[1] > value[half + 1]:
            raise ValueError(f"area {name}: bbox south {value[1]} is north of {value[half + 1]}")
        return {"bbox": [float(v) for v in value]}
    if isinstance(value, dict) and value.get("type") in GEOMETRY_TYPES:
        return {"intersects": value}
    raise ValueError(f"area {name}: give a bbox [west, south, east, north] or a GeoJSON geometry")


class PartitionsResource(dg.ConfigurableResource):
    """The partition dimension besides the time, and where its areas come from."""

    dimension: Literal["none", "area", "collection"] = Field(
        default="none", description="'area', 'collection', or 'none' (partitioned by time only, or not at all).")
    areas: dict[str, str] = Field(default_factory=dict,
                                  description="Static areas: name -> bbox or GeoJSON geometry, as JSON text.")
    source: str | None = Field(default=None, description="Dynamic partitions: a YAML file (path or URL) mapping "
                                                         "area names to areas, or listing collection ids.")

    def read_source(self, registry: StoreRegistry) -> dict[str, Any] | list[str]:
        """The dynamic areas (name -> area) or collections (ids) the source file holds now."""
        if not self.source:
            raise ConfigError("partitions are not dynamic: no file of areas or collections is configured")
        with tempfile.TemporaryDirectory(prefix="stac-packager-partitions-") as scratch:
            path = fetch(package_location(self.source, registry), registry, Path(scratch))
            try:
                data = yaml.safe_load(Path(path).read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{self.source}: not valid YAML ({exc})") from None
        if self.dimension == "collection":
            names = list(data) if isinstance(data, dict | list) else None
            if names is None:
                raise ConfigError(f"{self.source}: list the collection ids")
            return [check_partition_name(str(n)) for n in names]
        if not isinstance(data, dict):
            raise ConfigError(f"{self.source}: map area names to a bbox or a GeoJSON geometry")
        return data

    def partition_keys(self, registry: StoreRegistry) -> list[str]:
        """The partition keys of the source file, checked (a bad entry fails the whole file)."""
        data = self.read_source(registry)
        if isinstance(data, list):
            return data
        try:
            for name, area in data.items():
                check_partition_name(name)
                parse_area(area, name)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None
        return list(data)

    def search(self, name: str, registry: StoreRegistry | None = None) -> dict[str, Any]:
        """What the search of the partition ``name`` of this dimension fixes: its collection or its area."""
        if self.dimension == "collection":
            return {"collections": [name]}
        if self.dimension != "area":
            return {}
        if name in self.areas:
            area = json.loads(self.areas[name])
        elif self.source and registry is not None:
            data = self.read_source(registry)
            if name not in data:
                raise ConfigError(f"area {name!r} is not in {self.source} (any more): the partition cannot be "
                                  "searched; add it back, or delete the partition")
            area = data[name]
        else:
            raise ConfigError(f"area {name!r} is not configured (partitions.areas)")
        try:
            fixed = parse_area(area, name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return {"bbox": None, "intersects": None, **fixed}

    def area_geometry(self, name: str, registry: StoreRegistry | None = None) -> Any:
        """The area of the partition ``name`` as a bbox list or GeoJSON geometry (``None`` if not an area)."""
        if self.dimension != "area":
            return None
        fixed = self.search(name, registry)
        return fixed.get("bbox") or fixed.get("intersects")
