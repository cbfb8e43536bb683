"""The schedule that packages the time partition that just ended: yesterday (daily) or last month (monthly).

It runs at ``partitions.schedule.hour:minute`` in ``partitions.timezone`` (on the 1st for monthly
partitions), or on ``partitions.schedule.cron``, and requests the whole chain for the partition
``schedule.lag`` before the one the tick falls in (1: the previous one), tagged with the package it
writes. With areas or collections as a second dimension it requests one run per area or collection
(the dynamic ones as the instance knows them at the tick).

Each partition is requested once: Dagster scopes a schedule's run keys to the tick's time, so a cron
faster than the partitions (``0 */6 * * *`` for days) would package the same day at every tick. The
schedule leaves out a partition that already has a run of its own that did not fail; a failed or
canceled one is requested again at the next tick.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from pipelines.partitions import (
    PACKAGE_TAG,
    join_key,
    other_dimension,
    package_href,
    partition_path,
    previous_partition_key,
)
from pipelines.settings import PartitionSettings

SCHEDULE_NAME = "package_previous_partition"
RETRIED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
#: the tag the scheduler puts on every run with its tick's time (dagster._core.storage.tags)
TICK_TIME_TAG = ".dagster/scheduled_execution_time"


def schedule_cron(settings: PartitionSettings) -> str:
    when = settings.schedule
    if when.cron:
        return when.cron
    day = "*" if settings.kind == "daily" else "1"
    return f"{when.minute} {when.hour} {day} * *"


def build_package_schedule(job, partitions_def: dg.PartitionsDefinition, settings: PartitionSettings,
                           package_url: str,
                           default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
                           ) -> dg.ScheduleDefinition:
    lag = settings.schedule.lag
    unit = "day" if settings.kind == "daily" else "month"
    which = f"previous {unit}'s partition" if lag == 1 else f"partition {lag} {unit}s before the current one"
    others = other_dimension(partitions_def)

    @dg.schedule(name=SCHEDULE_NAME, job=job, cron_schedule=schedule_cron(settings),
                 execution_timezone=settings.timezone, default_status=default_status,
                 description=f"Package the {which}"
                             f"{', for every ' + settings.dimension if settings.dimension else ''}.")
    def package_previous_partition(context: dg.ScheduleEvaluationContext):
        time_key = previous_partition_key(partitions_def, context.scheduled_execution_time, lag)
        if time_key is None:
            return dg.SkipReason(f"no partition ended {lag} {unit}(s) before "
                                 f"{context.scheduled_execution_time.isoformat()}")
        if others is None:
            keys = [time_key]
        else:
            if isinstance(others, dg.DynamicPartitionsDefinition):
                with dg.partition_loading_context(dynamic_partitions_store=context.instance):
                    names = others.get_partition_keys()
            else:
                names = others.get_partition_keys()
            keys = [join_key(partitions_def, time_key, name) for name in names]
            if not keys:
                return dg.SkipReason(f"no {settings.dimension} to package yet (add some: sync_partitions)")
        requests = []
        for key in keys:
            path = partition_path(partitions_def, key)
            if not _requested(context, f"package:{path}"):
                requests.append(dg.RunRequest(run_key=f"package:{path}", partition_key=key,
                                              tags={PACKAGE_TAG: package_href(package_url, path)}))
        return requests or dg.SkipReason(f"{', '.join(map(str, keys))}: requested by an earlier tick already")

    return package_previous_partition


def _requested(context: dg.ScheduleEvaluationContext, run_key: str) -> bool:
    """Whether an earlier tick of this schedule requested ``run_key`` and that run has not failed.

    Runs of this very tick do not count: Dagster itself resumes a tick that was cut short."""
    records = context.instance.get_run_records(
        dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE_NAME, "dagster/run_key": run_key}), limit=10)
    for record in records:
        run = record.dagster_run
        tick = run.tags.get(TICK_TIME_TAG)
        if tick and dt.datetime.fromisoformat(tick) == context.scheduled_execution_time:
            continue
        if run.status not in RETRIED:
            return True
    return False
