"""The code location: assets, checks, jobs, schedule, sensor and resources, assembled in one place.

Resources come from the settings file named by ``STAC_PACKAGER_CONFIG`` (see
:mod:`pipelines.settings`), so the same code runs the offline demo, a laptop against Earth Search and
a Kubernetes deployment. ``partitions:`` in that file partitions the chain by acquisition time (adding
the schedule of the previous partition), by area or collection, or both; dynamic areas or collections add
the ``sync_partitions`` sensor. The revalidation sensor is always there. Schedules and sensors start
stopped: start them in the UI or over GraphQL.
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets import build_chain
from pipelines.partitions import (
    STORE_TAG,
    build_partitions_def,
    other_dimension,
    store_kind,
    time_partitions_def,
)
from pipelines.schedules import build_package_schedule
from pipelines.sensors import build_revalidation_sensor, build_sync_sensor
from pipelines.settings import Settings, build_resources, load_settings

PACKAGE_JOB = "package_stac"
REVALIDATE_JOB = "revalidate"


def build_definitions(settings_path: str | None = None, *, settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings(settings_path)
    chain = build_chain(settings)
    partitions_def = build_partitions_def(settings.partitions)
    # run-level tag for the run queue's per-backend limits (deploy/dagster.yaml): the store a run loads most
    run_tags = {STORE_TAG: store_kind(settings.relocation.target)}
    package_job = dg.define_asset_job(
        PACKAGE_JOB, selection=dg.AssetSelection.assets(*chain), tags=run_tags,
        description="Search, write items.parquet, lock, relocate and validate: the whole package.")
    # the asset, not only its check: a check-only job of a partitioned asset has no partitions (it could not run)
    revalidate_job = dg.define_asset_job(
        REVALIDATE_JOB, selection=dg.AssetSelection.assets(chain[-1]), tags=run_tags,
        description="Check the relocated lock against the live objects again.")
    package_url = _package_url(settings)
    schedules = []
    if time_partitions_def(partitions_def) is not None and settings.partitions.schedule.enabled:
        schedules.append(build_package_schedule(package_job, partitions_def, settings.partitions, package_url))
    sensors = [build_revalidation_sensor(revalidate_job, partitions_def,
                                         max_age_hours=settings.validation.max_age_hours,
                                         minimum_interval_seconds=settings.validation.sensor_interval_seconds)]
    dynamic = other_dimension(partitions_def)
    if isinstance(dynamic, dg.DynamicPartitionsDefinition):
        sensors.append(build_sync_sensor(partitions_def, dynamic, settings.partitions.dimension,
                                         settings.partitions.source, package_job=package_job,
                                         package_url=package_url,
                                         minimum_interval_seconds=settings.partitions.sync_interval_seconds))
    return dg.Definitions(assets=chain, jobs=[package_job, revalidate_job], schedules=schedules,
                          sensors=sensors, resources=build_resources(settings))


def _package_url(settings: Settings) -> str:
    """The package URL as the package resource holds it (plain paths made absolute)."""
    return build_resources(settings)["package"].url


defs = build_definitions()
