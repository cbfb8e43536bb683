"""Time-window partitions over acquisition datetime, and the concurrency pools of the chain.

``partitions: {kind: daily|monthly|none, start: "2020-01-01", timezone: UTC}`` in the settings file
(see :mod:`pipelines.settings`). A partition's search is restricted to its window (``[start, end)``)
and its package lives under ``<package url>/partitions/<key>``, its copies under
``<relocation target>/<key>`` (see :class:`resources.PackageResource`). ``none`` keeps one package.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from pipelines.settings import PartitionSettings, RetrySettings

#: run and op tag naming the storage backend (or the STAC API) a step loads; see deploy/dagster.yaml
STORE_TAG = "stac-packager/store"
PACKAGE_TAG = "stac-packager/package"
REASON_TAG = "stac-packager/reason"
STAC_API_POOL = "stac-api"


def build_partitions_def(settings: PartitionSettings) -> dg.TimeWindowPartitionsDefinition | None:
    """The chain's partitions, or ``None`` when ``kind`` is ``none``."""
    if settings.kind == "none":
        return None
    kwargs = {"start_date": settings.start, "timezone": settings.timezone, "end_offset": settings.end_offset}
    if settings.end:
        kwargs["end_date"] = settings.end
    if settings.kind == "daily":
        return dg.DailyPartitionsDefinition(**kwargs)
    return dg.MonthlyPartitionsDefinition(**kwargs)


def search_window(window: dg.TimeWindow) -> str:
    """The STAC ``datetime`` interval of a partition: STAC intervals are closed, partitions are ``[start, end)``.

    The end is one microsecond before the next partition's start, so an item acquired exactly at
    midnight belongs to one partition only.
    """
    end = window.end - dt.timedelta(microseconds=1)
    return f"{_rfc3339(window.start)}/{_rfc3339(end)}"


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def previous_partition_key(partitions_def: dg.TimeWindowPartitionsDefinition, when: dt.datetime) -> str | None:
    """The last partition that ended at or before ``when`` (the day or month before it), if it exists."""
    try:
        current = partitions_def.get_partition_key_for_timestamp(when.timestamp())
        start = partitions_def.time_window_for_partition_key(current).start
        key = partitions_def.get_partition_key_for_timestamp((start - dt.timedelta(microseconds=1)).timestamp())
    except Exception:  # before the first partition: nothing to package yet
        return None
    first = partitions_def.get_first_partition_window()
    if first is None or partitions_def.time_window_for_partition_key(key).start < first.start:
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
    """The href naming a (partition's) package, as :meth:`resources.PackageResource.root` places it."""
    base = package_url.rstrip("/")
    return f"{base}/partitions/{partition}" if partition else base
