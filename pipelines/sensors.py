"""Revalidation sensor: validate a package again when its relocated lock changed or its report got old.

Each tick lists the package store once (through the engine's store registry, so the same profiles and
credentials as the assets): for every package (one, or one per partition, at ``partitions/<date>``,
``partitions/<area>`` or ``partitions/<area>/<date>``) the relocated lock's ETag
(or last modified) and the validation report's last modified. It requests a ``revalidate`` run

* ``lock-changed``: the relocated lock is not the one the cursor last saw and no report was written
  since, or it is newer than the last report;
* ``stale``: the last report is older than ``validation.max_age_hours`` (or there is none).

Packages with an unfinished run are left for the next tick. Run keys make a request for the same lock
(or the same old report) happen once. The cursor is JSON
``{"packages": {partition path or "": {"lock": ETag or size@mtime, "report": ...}}}``: a lock that changed
since the last tick while the report did not is ``lock-changed`` even if the store's times say otherwise.

With dynamic areas or collections, ``sync_partitions`` keeps the instance's partitions in step with the
file that lists them: names added to the file become partitions, names removed stop being partitions
(their packages stay where they are). Without a time dimension it also requests the package run of
each new partition.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass

import dagster as dg

from packager.errors import ObjectNotFound
from packager.package import LAYOUT
from packager.stores import StoreRegistry
from packager.stores.base import ObjectFacts
from pipelines.partitions import (
    DYNAMIC_NAMES,
    PACKAGE_TAG,
    REASON_TAG,
    package_href,
    partition_key_for_path,
    partition_path,
    path_depth,
    time_partitions_def,
)
from resources import PackageResource, PartitionsResource, RewriteResource, StorageResource

SENSOR_NAME = "revalidate_packages"
SYNC_SENSOR_NAME = "sync_partitions"
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass
class PackageState:
    lock: ObjectFacts | None = None
    report: ObjectFacts | None = None

    @property
    def lock_token(self) -> str | None:
        return _token(self.lock)

    @property
    def report_token(self) -> str | None:
        return _token(self.report)

    def tokens(self) -> dict[str, str | None]:
        return {"lock": self.lock_token, "report": self.report_token}


def _token(facts: ObjectFacts | None) -> str | None:
    if facts is None:
        return None
    return facts.etag or f"{facts.size}@{facts.last_modified_iso()}"


def package_states(package: PackageResource, registry: StoreRegistry, depth: int) -> dict[str, PackageState]:
    """``{partition path or "": state}`` of every package that has a relocated lock or a report.

    ``depth``: path segments of a partition below ``partitions/`` (0: one unpartitioned package)."""
    files = {LAYOUT.relocated_lock: "lock", LAYOUT.validation_report: "report"}
    states: dict[str, PackageState] = {}
    if not depth:
        root = package.root(registry)
        state = PackageState()
        for relative, field in files.items():
            setattr(state, field, _head(registry, root.child(relative)))
        return {"": state} if state.lock or state.report else {}
    prefix = package.root(registry).child("partitions")
    store = registry.store_for(prefix)
    base = prefix.key.strip("/") + "/"

    async def scan() -> None:
        async for obj in store.list(base):
            relative = obj.key.strip("/")[len(base):] if obj.key.strip("/").startswith(base) else None
            segments = relative.split("/") if relative else []
            if len(segments) <= depth:
                continue
            path, rest = "/".join(segments[:depth]), "/".join(segments[depth:])
            if rest in files:
                setattr(states.setdefault(path, PackageState()), files[rest], obj.facts)

    try:
        asyncio.run(scan())
    except ObjectNotFound:  # nothing packaged yet (a local folder that does not exist)
        return {}
    return states


def _head(registry: StoreRegistry, location) -> ObjectFacts | None:
    try:
        return asyncio.run(registry.store_for(location).head(location.key))
    except ObjectNotFound:
        return None


def _reason(state: PackageState, seen: dict | None, now: dt.datetime, max_age: dt.timedelta) -> str | None:
    """Why a package needs validating again, or ``None``. ``seen``: its tokens in the cursor."""
    lock, report = state.lock, state.report
    if lock is None:
        return None
    if report is None:
        return "stale"  # relocated, never validated
    if seen and seen.get("lock") != state.lock_token and seen.get("report") == state.report_token:
        return "lock-changed"  # a new lock since the last tick and no report since
    if report.last_modified is not None and lock.last_modified is not None \
            and report.last_modified < lock.last_modified:
        return "lock-changed"  # changed after the last validation (also right after a sensor restart)
    if report.last_modified is not None and now - report.last_modified > max_age:
        return "stale"
    return None


def _busy(instance: dg.DagsterInstance, partition: str | None) -> bool:
    tags = {"dagster/partition": partition} if partition else None
    return bool(instance.get_run_ids(dg.RunsFilter(statuses=UNFINISHED, tags=tags), limit=1))


def build_revalidation_sensor(job, partitions_def: dg.PartitionsDefinition | None, *, max_age_hours: float,
                              minimum_interval_seconds: int,
                              default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
                              ) -> dg.SensorDefinition:
    """The sensor requesting ``job`` (the validation_report asset) per package that needs it."""
    max_age = dt.timedelta(hours=max_age_hours)

    @dg.sensor(name=SENSOR_NAME, job=job, minimum_interval_seconds=minimum_interval_seconds,
               default_status=default_status,
               description=f"Revalidate packages whose relocated lock changed or whose last validation is older "
                           f"than {max_age_hours:g} h.")
    def revalidate_packages(context: dg.SensorEvaluationContext, package: PackageResource, storage: StorageResource,
                            rewrite: RewriteResource):
        registry = storage.registry(rewrite)
        states = package_states(package, registry, depth=path_depth(partitions_def))
        seen = json.loads(context.cursor).get("packages", {}) if context.cursor else {}
        now = dt.datetime.now(dt.UTC)
        requests, cursor, busy = [], {}, []
        for key in sorted(states):  # the partition's path: "2024-06-01", "alps/2024-06-01"
            state = states[key]
            partition = partition_key_for_path(partitions_def, key) if key else None
            if state.lock is None or (key and not _has_partition(partitions_def, partition, context.instance)):
                continue
            reason = _reason(state, seen.get(key), now, max_age)
            if reason and _busy(context.instance, partition):
                busy.append(key or "package")
                if key in seen:
                    cursor[key] = seen[key]  # look again next tick
                continue
            cursor[key] = state.tokens()
            if reason is None:
                continue
            stamp = state.lock_token if reason == "lock-changed" else (
                state.report.last_modified_iso() if state.report else "never")
            requests.append(dg.RunRequest(
                run_key=f"{key or 'package'}:{reason}:{stamp}", partition_key=partition,
                tags={PACKAGE_TAG: package_href(package.url, key or None), REASON_TAG: reason}))
        context.update_cursor(json.dumps({"packages": cursor}, sort_keys=True))
        if requests:
            return requests
        if busy:
            return dg.SkipReason(f"package(s) with an unfinished run, next tick: {', '.join(busy)}")
        return dg.SkipReason(f"{len(cursor)} package(s): no relocated lock changed, no validation older than "
                             f"{max_age_hours:g} h")

    return revalidate_packages


def _has_partition(partitions_def: dg.PartitionsDefinition | None, key: str | None,
                   instance: dg.DagsterInstance) -> bool:
    if partitions_def is None or key is None:
        return False
    try:
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            return partitions_def.has_partition_key(key)
    except Exception:
        return False


def build_sync_sensor(partitions_def: dg.PartitionsDefinition, dynamic: dg.DynamicPartitionsDefinition,
                      dimension: str, source: str, *, package_job=None, package_url: str,
                      minimum_interval_seconds: int = 60,
                      default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
                      ) -> dg.SensorDefinition:
    """Keeps the dynamic ``dimension`` partitions equal to the names in ``source``.

    Without a time dimension, each new partition's package run is requested too (``package_job``)."""
    request_runs = time_partitions_def(partitions_def) is None and package_job is not None

    @dg.sensor(name=SYNC_SENSOR_NAME, minimum_interval_seconds=minimum_interval_seconds,
               default_status=default_status, job=package_job if request_runs else None,
               description=f"Add and remove the dynamic {dimension} partitions ({DYNAMIC_NAMES[dimension]}) as "
                           f"{source} lists them{'; package each new one' if request_runs else ''}.")
    def sync_partitions(context: dg.SensorEvaluationContext, partitions: PartitionsResource,
                        storage: StorageResource, rewrite: RewriteResource):
        wanted = partitions.partition_keys(storage.registry(rewrite))
        existing = set(context.instance.get_dynamic_partitions(dynamic.name))
        added = [k for k in wanted if k not in existing]
        removed = sorted(existing - set(wanted))
        if not added and not removed:
            return dg.SkipReason(f"{len(wanted)} {dimension}(s) in {source}, all of them partitions already")
        requests = []
        if added:
            requests.append(dynamic.build_add_request(added))
        if removed:
            requests.append(dynamic.build_delete_request(removed))
        runs = [dg.RunRequest(run_key=f"package:{key}", partition_key=key,
                              tags={PACKAGE_TAG: package_href(package_url, partition_path(dynamic, key))})
                for key in added] if request_runs else []
        context.log.info(f"{dimension}s added: {added or 'none'}; removed: {removed or 'none'}")
        return dg.SensorResult(dynamic_partitions_requests=requests, run_requests=runs)

    return sync_partitions
