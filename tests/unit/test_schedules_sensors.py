"""The partitions, the schedule of the previous partition and the revalidation sensor, on a real instance.

The sensor reads the package store through the engine's registry; here the package is a local folder,
so the relocated locks and reports are files whose times the tests set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from packager.errors import ConfigError
from pipelines.definitions import build_definitions
from pipelines.partitions import (
    DYNAMIC_NAMES,
    build_partitions_def,
    other_dimension,
    partition_key_for_path,
    partition_path,
    path_depth,
    previous_partition_key,
    search_window,
    split_key,
    store_kind,
    store_pool,
)
from pipelines.schedules import SCHEDULE_NAME
from pipelines.sensors import SENSOR_NAME, SYNC_SENSOR_NAME
from pipelines.settings import PartitionSettings, Settings, build_resources

# Dagster 1.13 warns about its own per-dimension tags of multi-partition runs (dagster/partition/<dimension>)
pytestmark = pytest.mark.filterwarnings("ignore:Non-compliant tag keys like \\['dagster/partition/:DeprecationWarning")
UTC = dt.UTC
LOCK = "relocated/assets.lock.parquet"
REPORT = "validation/report.parquet"


def _settings(tmp_path: Path, kind: str = "daily", **partitions) -> Settings:
    return Settings.model_validate({
        "package": {"url": str(tmp_path / "pkg")}, "relocation": {"target": str(tmp_path / "mirror")},
        "partitions": {"kind": kind, "start": "2020-01-01", **partitions},
        "validation": {"max_age_hours": 24, "sensor_interval_seconds": 30},
    })


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:  # persistent (a temp dir): schedules look at earlier runs
        yield instance


# -- partitions ------------------------------------------------------------------------------------


def test_partitions_from_settings():
    assert build_partitions_def(PartitionSettings()) is None
    daily = build_partitions_def(PartitionSettings(kind="daily", start="2020-01-01"))
    assert isinstance(daily, dg.DailyPartitionsDefinition)
    assert daily.get_first_partition_key() == "2020-01-01"
    monthly = build_partitions_def(PartitionSettings(kind="monthly", start="2020-01-01", timezone="Europe/Berlin"))
    assert isinstance(monthly, dg.MonthlyPartitionsDefinition) and monthly.timezone == "Europe/Berlin"
    # a partition's search covers [start, end): its last instant is one microsecond before the next day
    assert search_window(daily.time_window_for_partition_key("2020-01-02")) == \
        "2020-01-02T00:00:00Z/2020-01-02T23:59:59.999999Z"
    berlin = build_partitions_def(PartitionSettings(kind="daily", timezone="Europe/Berlin"))
    assert search_window(berlin.time_window_for_partition_key("2020-01-02")) == \
        "2020-01-01T23:00:00Z/2020-01-02T22:59:59.999999Z"


def test_previous_partition_key():
    daily = build_partitions_def(PartitionSettings(kind="daily", start="2020-01-01"))
    assert previous_partition_key(daily, dt.datetime(2020, 1, 3, 3, tzinfo=UTC)) == "2020-01-02"
    assert previous_partition_key(daily, dt.datetime(2020, 1, 2, 0, tzinfo=UTC)) == "2020-01-01"
    assert previous_partition_key(daily, dt.datetime(2020, 1, 1, 3, tzinfo=UTC)) is None
    assert previous_partition_key(daily, dt.datetime(2019, 6, 1, tzinfo=UTC)) is None
    monthly = build_partitions_def(PartitionSettings(kind="monthly", start="2020-01-01"))
    assert previous_partition_key(monthly, dt.datetime(2020, 3, 1, 3, tzinfo=UTC)) == "2020-02-01"


def test_pools_follow_the_stores():
    assert [store_kind(u) for u in ("package", "/abs/x", "file:///x", "s3://b/p", "gs://b", "https://h/x",
                                    "webdav+https://h/x", "swift://c/x")] == \
        ["file", "file", "file", "s3", "gs", "http", "webdav", "swift"]
    assert store_pool("s3://bucket/assets") == "store-s3"
    settings = Settings.model_validate({"package": {"url": "s3://b/packages"}, "relocation": {"target": "/mnt/x"}})
    defs = build_definitions(settings=settings)
    ops = {name: defs.resolve_assets_def(name).op for name in
           ("search_results", "items_parquet", "assets_lock", "relocated_assets", "validation_report")}
    assert {name: op.pool for name, op in ops.items()} == {
        "search_results": "stac-api", "items_parquet": "store-s3", "assets_lock": "store-s3",
        "relocated_assets": "store-file", "validation_report": "store-file"}
    assert ops["items_parquet"].tags["stac-packager/store"] == "s3"
    assert all(op.retry_policy == dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)
               for op in ops.values())
    job = defs.resolve_job_def("package_stac")
    assert job.partitions_def is None and job.tags["stac-packager/store"] == "file"
    assert not defs.schedules  # unpartitioned: nothing to schedule
    assert defs.resolve_sensor_def(SENSOR_NAME)  # the sensor revalidates the one package


def test_partitioned_definitions_load(tmp_path):
    defs = build_definitions(settings=_settings(tmp_path))
    dg.Definitions.validate_loadable(defs)
    for name in ("package_stac", "revalidate"):
        assert isinstance(defs.resolve_job_def(name).partitions_def, dg.DailyPartitionsDefinition)
    assert defs.resolve_schedule_def(SCHEDULE_NAME).cron_schedule == "0 3 * * *"
    assert defs.resolve_sensor_def(SENSOR_NAME).minimum_interval_seconds == 30
    monthly = build_definitions(settings=_settings(tmp_path, "monthly", schedule={"hour": 4, "minute": 30}))
    assert monthly.resolve_schedule_def(SCHEDULE_NAME).cron_schedule == "30 4 1 * *"


# -- schedule --------------------------------------------------------------------------------------


def test_schedule_requests_the_previous_day(tmp_path, instance):
    defs = build_definitions(settings=_settings(tmp_path))
    schedule, repo = defs.resolve_schedule_def(SCHEDULE_NAME), defs.get_repository_def()
    result = schedule.evaluate_tick(dg.build_schedule_context(
        instance=instance, repository_def=repo, scheduled_execution_time=dt.datetime(2020, 1, 3, 3, tzinfo=UTC)))
    [request] = result.run_requests
    assert request.partition_key == "2020-01-02"
    assert request.run_key == "package:2020-01-02"
    assert request.tags["stac-packager/package"] == f"{tmp_path / 'pkg'}/partitions/2020-01-02"
    assert request.tags["dagster/partition"] == "2020-01-02"

    too_early = schedule.evaluate_tick(dg.build_schedule_context(
        instance=instance, repository_def=repo, scheduled_execution_time=dt.datetime(2020, 1, 1, 3, tzinfo=UTC)))
    assert not too_early.run_requests and too_early.skip_message


def test_schedule_monthly(tmp_path, instance):
    defs = build_definitions(settings=_settings(tmp_path, "monthly"))
    result = defs.resolve_schedule_def(SCHEDULE_NAME).evaluate_tick(dg.build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def(), scheduled_execution_time=dt.datetime(2020, 3, 1, 3, tzinfo=UTC)))
    assert [r.partition_key for r in result.run_requests] == ["2020-02-01"]


# -- sensor ----------------------------------------------------------------------------------------


def _write(path: Path, body: bytes, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, (mtime, mtime))


class Sensor:
    """Ticks the revalidation sensor like the daemon does: the cursor carries over."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance):
        self.defs = build_definitions(settings=settings)
        self.sensor = self.defs.resolve_sensor_def(SENSOR_NAME)
        self.resources = build_resources(settings)
        self.instance = instance
        self.cursor: str | None = None

    def tick(self):
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources,
                                     definitions=self.defs) as context:  # resources may open and close
            result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        return result


def _requests(result) -> list[tuple[str | None, str]]:
    return [(r.partition_key, r.tags["stac-packager/reason"]) for r in result.run_requests]


def test_sensor_partitioned(tmp_path, instance):
    settings = _settings(tmp_path)
    parts = tmp_path / "pkg" / "partitions"
    sensor = Sensor(settings, instance)

    first = sensor.tick()  # nothing packaged yet (the folder does not exist)
    assert not first.run_requests and first.skip_message

    now = time.time()
    for day in ("2020-01-01", "2020-01-02"):
        _write(parts / day / LOCK, b"lock " + day.encode(), now - 600)
        _write(parts / day / REPORT, b"report", now - 300)
    _write(parts / "not-a-day" / LOCK, b"x", now - 600)  # not a partition of this definition: ignored

    quiet = sensor.tick()
    assert not quiet.run_requests and "no relocated lock changed" in quiet.skip_message
    cursor = json.loads(quiet.cursor)["packages"]
    assert sorted(cursor) == ["2020-01-01", "2020-01-02"]
    assert all(v["lock"] and v["report"] for v in cursor.values())
    assert not sensor.tick().run_requests  # nothing changed: skip again

    # the relocated lock of one partition is rewritten after its last validation
    _write(parts / "2020-01-02" / LOCK, b"another lock", now - 60)
    changed = sensor.tick()
    assert _requests(changed) == [("2020-01-02", "lock-changed")]
    [request] = changed.run_requests
    assert request.tags["stac-packager/package"] == f"{tmp_path / 'pkg'}/partitions/2020-01-02"
    assert request.tags["dagster/partition"] == "2020-01-02"
    assert request.run_key.startswith("2020-01-02:lock-changed:")
    assert json.loads(changed.cursor)["packages"]["2020-01-02"]["lock"] != cursor["2020-01-02"]["lock"]

    # the revalidation run writes a new report: quiet again
    _write(parts / "2020-01-02" / REPORT, b"report 2", now - 30)
    assert not sensor.tick().run_requests

    # a lock replaced with an older time (e.g. restored with cp -p): the cursor still tells it changed
    _write(parts / "2020-01-01" / LOCK, b"restored lock", now - 3600)
    assert _requests(sensor.tick()) == [("2020-01-01", "lock-changed")]
    _write(parts / "2020-01-01" / REPORT, b"report 3", now - 20)
    assert not sensor.tick().run_requests

    # the last validation of one partition is older than validation.max_age_hours
    _write(parts / "2020-01-01" / LOCK, b"restored lock", now - 3 * 86400)
    _write(parts / "2020-01-01" / REPORT, b"report 3", now - 2 * 86400)
    stale = sensor.tick()
    assert _requests(stale) == [("2020-01-01", "stale")]
    assert stale.run_requests[0].run_key.startswith("2020-01-01:stale:")

    # relocated but never validated: stale too
    _write(parts / "2020-01-03" / LOCK, b"lock 3", now - 10)
    assert sorted(_requests(sensor.tick())) == [("2020-01-01", "stale"), ("2020-01-03", "stale")]


def test_sensor_waits_for_unfinished_runs(tmp_path, instance):
    from dagster._core.test_utils import create_run_for_test

    settings = _settings(tmp_path)
    parts = tmp_path / "pkg" / "partitions"
    now = time.time()
    _write(parts / "2020-01-02" / LOCK, b"lock", now - 60)
    _write(parts / "2020-01-02" / REPORT, b"old report", now - 120)  # the package run is still validating
    run = create_run_for_test(instance, job_name="package_stac", status=dg.DagsterRunStatus.STARTED,
                              tags={"dagster/partition": "2020-01-02"})
    sensor = Sensor(settings, instance)
    busy = sensor.tick()
    assert not busy.run_requests and "unfinished run" in busy.skip_message
    instance.report_run_failed(run)
    assert _requests(sensor.tick()) == [("2020-01-02", "lock-changed")]


def test_sensor_unpartitioned(tmp_path, instance):
    settings = _settings(tmp_path, "none")
    pkg = tmp_path / "pkg"
    now = time.time()
    _write(pkg / LOCK, b"lock", now - 600)
    _write(pkg / REPORT, b"report", now - 300)
    sensor = Sensor(settings, instance)
    assert not sensor.tick().run_requests
    _write(pkg / LOCK, b"lock changed", now - 5)
    result = sensor.tick()
    assert _requests(result) == [(None, "lock-changed")]
    assert result.run_requests[0].tags["stac-packager/package"] == str(pkg)
    assert result.run_requests[0].run_key.startswith("package:lock-changed:")


def test_deploy_dagster_yaml_loads(tmp_path):
    """deploy/dagster.yaml is a valid instance config (Postgres swapped for sqlite to load it here)."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[2] / "deploy" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    del config["storage"]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "dagster/backfill", "limit": 3} in limits
    finally:
        instance.dispose()


# -- lag, cron, areas and collections --------------------------------------------------------------


def test_schedule_lag_and_cron(tmp_path, instance):
    defs = build_definitions(settings=_settings(tmp_path, schedule={"cron": "*/15 * * * *", "lag": 3}))
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.cron_schedule == "*/15 * * * *"
    result = schedule.evaluate_tick(dg.build_schedule_context(
        instance=instance, repository_def=defs.get_repository_def(),
        scheduled_execution_time=dt.datetime(2020, 1, 10, 0, 15, tzinfo=UTC)))
    assert [r.partition_key for r in result.run_requests] == ["2020-01-07"]
    daily = build_partitions_def(PartitionSettings(kind="daily", start="2020-01-01"))
    # years back costs nothing (calendar arithmetic), and the timezone decides the day
    assert previous_partition_key(daily, dt.datetime(2026, 11, 21, 23, 59, tzinfo=UTC), 2514) == "2020-01-03"
    berlin = build_partitions_def(PartitionSettings(kind="daily", start="2020-01-01", timezone="Europe/Berlin"))
    assert previous_partition_key(berlin, dt.datetime(2020, 1, 3, 23, 30, tzinfo=UTC)) == "2020-01-03"
    monthly = build_partitions_def(PartitionSettings(kind="monthly", start="2020-01-01"))
    assert previous_partition_key(monthly, dt.datetime(2021, 2, 1, 3, tzinfo=UTC), 13) == "2020-01-01"
    assert previous_partition_key(monthly, dt.datetime(2021, 2, 1, 3, tzinfo=UTC), 14) is None
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        PartitionSettings(kind="daily", schedule={"lag": 0})


def test_area_and_collection_partitions_from_settings():
    areas = {"alps": [5.9, 45.8, 10.5, 47.8],
             "lagoon": {"type": "Polygon", "coordinates": [[[12.2, 45.2], [12.6, 45.2], [12.6, 45.6], [12.2, 45.2]]]}}
    multi = build_partitions_def(PartitionSettings(kind="daily", start="2020-01-01", areas=areas))
    assert isinstance(multi, dg.MultiPartitionsDefinition)
    assert {d.name: type(d.partitions_def).__name__ for d in multi.partitions_defs} == \
        {"date": "DailyPartitionsDefinition", "area": "StaticPartitionsDefinition"}
    key = dg.MultiPartitionKey({"date": "2020-01-02", "area": "alps"})
    assert str(key) == "alps|2020-01-02"
    assert split_key(multi, key) == split_key(multi, "alps|2020-01-02") == ("2020-01-02", "alps")
    assert partition_path(multi, key) == "alps/2020-01-02"
    assert partition_key_for_path(multi, "alps/2020-01-02") == key
    assert partition_key_for_path(multi, "alps") is None and path_depth(multi) == 2

    only = build_partitions_def(PartitionSettings(collections=["sentinel-2-l2a", "landsat-c2-l2"]))
    assert only.get_partition_keys() == ["sentinel-2-l2a", "landsat-c2-l2"]
    assert partition_path(only, "landsat-c2-l2") == "landsat-c2-l2" and path_depth(only) == 1
    dynamic = build_partitions_def(PartitionSettings(kind="monthly", areas="s3://ops/areas.yaml"))
    assert isinstance(other_dimension(dynamic), dg.DynamicPartitionsDefinition)
    assert other_dimension(dynamic).name == DYNAMIC_NAMES["area"]

    resources = build_resources(Settings.model_validate({"partitions": {"kind": "daily", "areas": areas}}))
    partitions = resources["partitions"]
    assert partitions.search("alps") == {"bbox": [5.9, 45.8, 10.5, 47.8], "intersects": None}
    assert partitions.search("lagoon") == {"bbox": None, "intersects": areas["lagoon"]}
    with pytest.raises(ConfigError, match="'nowhere' is not configured"):
        partitions.search("nowhere")

    for bad, message in [({"areas": {"a": [1, 2, 3]}}, "4 numbers"),
                         ({"areas": {"a": [0, 5, 1, 4]}}, "north of"),
                         ({"areas": {"a b": [0, 0, 1, 1]}}, "partition name"),
                         ({"areas": {"a": {"type": "Feature"}}}, "GeoJSON geometry"),
                         ({"collections": ["x", "x"]}, "listed twice"),
                         ({"collections": ["a|b"]}, "partition name"),
                         ({"areas": {"a": [0, 0, 1, 1]}, "collections": ["c"]}, "not both")]:
        with pytest.raises(ValueError, match=message):
            PartitionSettings(**bad)


def test_schedule_requests_every_area(tmp_path):
    settings = _settings(tmp_path, areas={"alps": [5.9, 45.8, 10.5, 47.8], "etna": [14.8, 37.6, 15.2, 37.9]})
    defs = build_definitions(settings=settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_schedule_def(SCHEDULE_NAME).evaluate_tick(dg.build_schedule_context(
            instance=instance, repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime(2020, 1, 3, 3, tzinfo=UTC)))
    assert [(r.partition_key, r.run_key, r.tags["stac-packager/package"]) for r in result.run_requests] == [
        ("alps|2020-01-02", "package:alps/2020-01-02", f"{tmp_path / 'pkg'}/partitions/alps/2020-01-02"),
        ("etna|2020-01-02", "package:etna/2020-01-02", f"{tmp_path / 'pkg'}/partitions/etna/2020-01-02")]
    assert result.run_requests[0].tags["dagster/partition/area"] == "alps"


def test_sensor_multi_partitions(tmp_path, instance):
    settings = _settings(tmp_path, areas={"alps": [5.9, 45.8, 10.5, 47.8], "etna": [14.8, 37.6, 15.2, 37.9]})
    parts = tmp_path / "pkg" / "partitions"
    now = time.time()
    for path in ("alps/2020-01-01", "etna/2020-01-01", "etna/2020-01-02"):
        _write(parts / path / LOCK, b"lock", now - 600)
        _write(parts / path / REPORT, b"report", now - 300)
    _write(parts / "vesuvius/2020-01-01" / LOCK, b"x", now - 600)  # not an area of this definition
    sensor = Sensor(settings, instance)
    quiet = sensor.tick()
    assert sorted(json.loads(quiet.cursor)["packages"]) == ["alps/2020-01-01", "etna/2020-01-01", "etna/2020-01-02"]
    _write(parts / "etna/2020-01-02" / LOCK, b"new lock", now - 60)
    [request] = sensor.tick().run_requests
    assert request.partition_key == "etna|2020-01-02"
    assert request.tags["stac-packager/package"] == f"{tmp_path / 'pkg'}/partitions/etna/2020-01-02"
    assert request.tags["dagster/partition/area"] == "etna"


def test_sync_partitions_follows_the_file(tmp_path):
    source = tmp_path / "collections.yaml"
    source.write_text("- sentinel-2-l2a\n- landsat-c2-l2\n")
    settings = _settings(tmp_path, collections=str(source))
    defs = build_definitions(settings=settings)
    sync = defs.resolve_sensor_def(SYNC_SENSOR_NAME)
    assert not sync.has_jobs  # with a time dimension, new collections are not packaged by themselves
    resources = build_resources(settings)
    name = DYNAMIC_NAMES["collection"]
    with dg.instance_for_test() as instance:
        def tick():
            with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), resources=resources,
                                         definitions=defs) as context:
                result = sync.evaluate_tick(context)
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(name, request.partition_keys)
                else:
                    for key in request.partition_keys:
                        instance.delete_dynamic_partition(name, key)
            return result

        first = tick()
        assert not first.run_requests
        assert instance.get_dynamic_partitions(name) == ["sentinel-2-l2a", "landsat-c2-l2"]
        assert "all of them partitions already" in tick().skip_message
        source.write_text("- landsat-c2-l2\n- naip\n")
        tick()
        assert sorted(instance.get_dynamic_partitions(name)) == ["landsat-c2-l2", "naip"]
        # the schedule packages yesterday for each collection the instance knows now
        result = defs.resolve_schedule_def(SCHEDULE_NAME).evaluate_tick(dg.build_schedule_context(
            instance=instance, repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime(2020, 1, 3, 3, tzinfo=UTC)))
        assert sorted(r.partition_key for r in result.run_requests) == \
            ["landsat-c2-l2|2020-01-02", "naip|2020-01-02"]

        source.write_text("- landsat-c2-l2\n- not a valid name\n")
        with pytest.raises(Exception, match="partition name"):
            tick()


def test_a_fast_cron_requests_each_partition_once(tmp_path, instance):
    """Dagster dedupes a schedule's run keys per tick only: the schedule skips what an earlier tick asked for."""
    from dagster._core.test_utils import create_run_for_test

    defs = build_definitions(settings=_settings(tmp_path, schedule={"cron": "0 */6 * * *"}))
    schedule, repo = defs.resolve_schedule_def(SCHEDULE_NAME), defs.get_repository_def()

    def tick(hour: int):
        when = dt.datetime(2020, 1, 3, hour, tzinfo=UTC)
        return schedule.evaluate_tick(dg.build_schedule_context(instance=instance, repository_def=repo,
                                                                scheduled_execution_time=when)), when

    (first, when) = tick(0)
    [request] = first.run_requests
    run = create_run_for_test(instance, job_name="package_stac", status=dg.DagsterRunStatus.STARTED, tags={
        **request.tags, "dagster/run_key": request.run_key, ".dagster/scheduled_execution_time": when.isoformat()})
    again, _ = tick(0)  # the same tick evaluated again (the daemon resumes it): Dagster's own dedupe applies
    assert [r.run_key for r in again.run_requests] == ["package:2020-01-02"]
    later, _ = tick(6)
    assert not later.run_requests and "requested by an earlier tick" in later.skip_message
    instance.report_run_failed(run)
    assert [r.partition_key for r in tick(12)[0].run_requests] == ["2020-01-02"]  # failed: asked again
