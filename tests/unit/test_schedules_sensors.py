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

from pipelines.definitions import build_definitions
from pipelines.partitions import (
    build_partitions_def,
    previous_partition_key,
    search_window,
    store_kind,
    store_pool,
)
from pipelines.schedules import SCHEDULE_NAME
from pipelines.sensors import SENSOR_NAME
from pipelines.settings import PartitionSettings, Settings, build_resources

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
    return dg.DagsterInstance.ephemeral()


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
