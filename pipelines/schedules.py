"""The schedule that packages the partition that just ended: yesterday (daily) or last month (monthly).

It runs at ``partitions.schedule.hour:minute`` in ``partitions.timezone`` (on the 1st for monthly
partitions) and requests the whole chain for the previous partition, tagged with the package it
writes. The run key makes a re-evaluated tick request it once.
"""

from __future__ import annotations

import dagster as dg

from pipelines.partitions import PACKAGE_TAG, package_href, previous_partition_key
from pipelines.settings import PartitionSettings

SCHEDULE_NAME = "package_previous_partition"


def build_package_schedule(job, partitions_def: dg.TimeWindowPartitionsDefinition, settings: PartitionSettings,
                           package_url: str,
                           default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
                           ) -> dg.ScheduleDefinition:
    when = settings.schedule
    day = "*" if settings.kind == "daily" else "1"
    cron = f"{when.minute} {when.hour} {day} * *"

    @dg.schedule(name=SCHEDULE_NAME, job=job, cron_schedule=cron, execution_timezone=settings.timezone,
                 default_status=default_status,
                 description=f"Package the previous {'day' if settings.kind == 'daily' else 'month'}'s partition.")
    def package_previous_partition(context: dg.ScheduleEvaluationContext):
        key = previous_partition_key(partitions_def, context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason(f"no partition ended before {context.scheduled_execution_time.isoformat()}")
        return dg.RunRequest(run_key=f"package:{key}", partition_key=key,
                             tags={PACKAGE_TAG: package_href(package_url, key)})

    return package_previous_partition
