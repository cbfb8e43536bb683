"""Partitions of the chain: acquisition time, area or collection (or time × one of them), and its pools.

``partitions: {kind: daily|monthly|none, start: "2020-01-01", timezone: UTC}`` in the settings file
(see :mod:`pipelines.settings`), optionally with ``areas`` or ``collections``: static partitions, or
dynamic ones named in a file. A partition's search is restricted to its window (``[start, end)``), its
area or its collection. Its package lives under ``<package url>/partitions/<path>`` and its copies
under ``<relocation target>/<path>`` (see :class:`resources.PackageResource`), where the path is the
key of a single dimension (``2024-06-01``, ``alps``) or ``<area or collection>/<date>`` for both
(Dagster's key is then ``alps|2024-06-01``). ``none`` without areas or collections keeps one package.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from pipelines.settings import PartitionSettings, RetrySettings

#: run and op tag naming the storage backend (or the STAC API) a step loads; see deploy/dagster.yaml
STORE_TAG = "stac-packager/store"
PACKAGE_TAG = "stac-packager/package"
REASON_TAG = "stac-packager/reason"
STAC_API_POOL = "stac-api"
#: the name of the time dimension of multi-partitions (the other is "area" or "collection")
TIME_DIMENSION = "date"
#: instance-wide names of the dynamic partitions (dagster/partitions UI, GraphQL addDynamicPartition)
DYNAMIC_NAMES = {"area": "stac_packager_areas", "collection": "stac_packager_collections"}


def build_time_partitions_def(settings: PartitionSettings) -> dg.TimeWindowPartitionsDefinition | None:
    """The time dimension, or ``None`` when ``kind`` is ``none``."""
    if settings.kind == "none":
        return None
    kwargs = {"start_date": settings.start, "timezone": settings.timezone, "end_offset": settings.end_offset}
    if settings.end:
        kwargs["end_date"] = settings.end
    if settings.kind == "daily":
        return dg.DailyPartitionsDefinition(**kwargs)
    return dg.MonthlyPartitionsDefinition(**kwargs)


def build_dimension_def(settings: PartitionSettings) -> dg.PartitionsDefinition | None:
    """The area or collection dimension: static from the settings, dynamic from a file; ``None`` if neither."""
    dimension = settings.dimension
    if dimension is None:
        return None
    if settings.source:
        return dg.DynamicPartitionsDefinition(name=DYNAMIC_NAMES[dimension])
    names = list(settings.areas) if dimension == "area" else list(settings.collections)
    return dg.StaticPartitionsDefinition(names)


def build_partitions_def(settings: PartitionSettings) -> dg.PartitionsDefinition | None:
    """The chain's partitions: time, area or collection, both as a multi-partition, or ``None``."""
    time, other = build_time_partitions_def(settings), build_dimension_def(settings)
    if time is None or other is None:
        return time or other
    return dg.MultiPartitionsDefinition({TIME_DIMENSION: time, settings.dimension: other})


def time_partitions_def(partitions_def: dg.PartitionsDefinition | None) -> dg.TimeWindowPartitionsDefinition | None:
    """The time dimension of ``partitions_def``, if it has one."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return partitions_def
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        for dimension in partitions_def.partitions_defs:
            if isinstance(dimension.partitions_def, dg.TimeWindowPartitionsDefinition):
                return dimension.partitions_def
    return None


def other_dimension(partitions_def: dg.PartitionsDefinition | None) -> dg.PartitionsDefinition | None:
    """The area or collection dimension of ``partitions_def`` (the whole of it when not a multi-partition)."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return next(d.partitions_def for d in partitions_def.partitions_defs if d.name != TIME_DIMENSION)
    if partitions_def is None or isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return None
    return partitions_def


def split_key(partitions_def: dg.PartitionsDefinition | None, key: str | None) -> tuple[str | None, str | None]:
    """``(time key, area or collection key)`` of a partition key; ``None`` for a dimension it does not have."""
    if partitions_def is None or key is None:
        return None, None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        keys = (key if isinstance(key, dg.MultiPartitionKey)
                else partitions_def.get_partition_key_from_str(key)).keys_by_dimension
        return keys[TIME_DIMENSION], next(v for k, v in keys.items() if k != TIME_DIMENSION)
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return str(key), None
    return None, str(key)


def join_key(partitions_def: dg.PartitionsDefinition, time_key: str | None, other_key: str | None) -> str:
    """The partition key of a (time, area or collection) pair: ``alps|2024-06-01`` for a multi-partition."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        other = next(d.name for d in partitions_def.partitions_defs if d.name != TIME_DIMENSION)
        return dg.MultiPartitionKey({TIME_DIMENSION: time_key, other: other_key})
    return time_key if time_key is not None else other_key


def partition_path(partitions_def: dg.PartitionsDefinition | None, key: str | None) -> str | None:
    """Where a partition's package lives below ``partitions/``: its key, or ``<area>/<date>``."""
    time_key, other_key = split_key(partitions_def, key)
    parts = [k for k in (other_key, time_key) if k is not None]
    return "/".join(parts) if parts else None


def path_depth(partitions_def: dg.PartitionsDefinition | None) -> int:
    """How many path segments a partition's path has: 0 (unpartitioned), 1 or 2 (multi-partitions)."""
    if partitions_def is None:
        return 0
    return 2 if isinstance(partitions_def, dg.MultiPartitionsDefinition) else 1


def partition_key_for_path(partitions_def: dg.PartitionsDefinition | None, path: str) -> str | None:
    """The partition key of a package path below ``partitions/`` (the inverse of :func:`partition_path`)."""
    segments = path.strip("/").split("/")
    if len(segments) != path_depth(partitions_def) or not all(segments):
        return None
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return join_key(partitions_def, segments[1], segments[0])
    return segments[0]


def search_window(window: dg.TimeWindow) -> str:
    """The STAC ``datetime`` interval of a partition: STAC intervals are closed, partitions are ``[start, end)``.

    The end is one microsecond before the next partition's start, so an item acquired exactly at
    midnight belongs to one partition only.
    """
    end = window.end - dt.timedelta(microseconds=1)
    return f"{_rfc3339(window.start)}/{_rfc3339(end)}"


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def previous_partition_key(partitions_def: dg.PartitionsDefinition, when: dt.datetime, lag: int = 1) -> str | None:
    """The time partition ``lag`` before the one ``when`` falls in (1: the day or month before), if it exists.

    Calendar arithmetic in the partitions' timezone, so a lag of years costs nothing."""
    time_def = time_partitions_def(partitions_def)
    if time_def is None:
        return None
    local = when.astimezone(ZoneInfo(time_def.timezone))
    if isinstance(time_def, dg.MonthlyPartitionsDefinition):
        months = local.year * 12 + local.month - 1 - lag
        start = dt.datetime(months // 12, months % 12 + 1, 1)
    elif isinstance(time_def, dg.DailyPartitionsDefinition):
        start = dt.datetime.combine(local.date() - dt.timedelta(days=lag), dt.time())
    else:
        raise ValueError(f"unsupported time partitions {type(time_def).__name__}")
    key = start.strftime(time_def.fmt)
    first = time_def.get_first_partition_window()
    if first is None or time_def.time_window_for_partition_key(key).start < first.start:
        return None
    return key


def store_kind(url: str) -> str:
    """The backend a package or target URL lives on: ``s3``, ``gs``, ``az``, ``http``, ``swift``, ``webdav``, ``file``."""
    if "://" not in url:
        return "file"
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith("webdav"):
        return "webdav"
    if scheme in ("https", "http"):
        return "http"
    return {"abfs": "az", "abfss": "az", "azure": "az", "gcs": "gs"}.get(scheme, scheme)


def store_pool(url: str) -> str:
    """The concurrency pool of the steps that load one backend, e.g. ``store-s3``, ``store-file``."""
    return f"store-{store_kind(url)}"


def retry_policy(settings: RetrySettings) -> dg.RetryPolicy | None:
    if settings.max_retries == 0:
        return None
    backoff = {"exponential": dg.Backoff.EXPONENTIAL, "linear": dg.Backoff.LINEAR, "none": None}[settings.backoff]
    return dg.RetryPolicy(max_retries=settings.max_retries, delay=settings.delay, backoff=backoff)


def package_href(package_url: str, partition: str | None) -> str:
    """The href naming a (partition's) package, as :meth:`resources.PackageResource.root` places it.

    ``partition``: the partition's path (:func:`partition_path`), not its key."""
    base = package_url.rstrip("/")
    return f"{base}/partitions/{partition}" if partition else base
