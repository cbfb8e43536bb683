"""The asset chain: search results -> items.parquet -> assets.lock.parquet -> relocated assets -> validation report.

Each asset reads the previous one's file from the package store, calls the engine, publishes its own
file(s) atomically and reports what a person running the platform wants to see. No asset holds data
in memory for the next: every step can run in its own process or pod.
"""


import functools
import inspect
import json
import warnings
from pathlib import Path

import dagster as dg
from pydantic import Field

from packager.enrich import write_enriched_items
from packager.errors import PackagerError
from packager.footprint import footprint_map_of_parquet
from packager.items import iter_items, ndjson_to_geoparquet
from packager.lock import AssetFilter, build_lock, write_failures
from packager.package import LAYOUT
from packager.relocate import RelocationSettings, relocate
from packager.validate import validate
from pipelines.metadata import failures_table, mib, rate, records_table
from pipelines.partitions import (
    STAC_API_POOL,
    STORE_TAG,
    build_partitions_def,
    partition_path,
    retry_policy,
    search_window,
    split_key,
    store_kind,
    time_partitions_def,
)
from pipelines.settings import Settings
from resources import (
    PackageResource,
    PartitionsResource,
    RewriteResource,
    SearchSpec,
    StacApiResource,
    StorageResource,
)

GROUP = "stac_package"
PARQUET = "application/vnd.apache.parquet"
MiB = 1 << 20


def _partition(context: dg.AssetExecutionContext) -> str | None:
    """The partition's path below ``partitions/`` (``2024-06-01``, ``alps``, ``alps/2024-06-01``), if any."""
    if not context.has_partition_key:
        return None
    return partition_path(context.assets_def.partitions_def, context.partition_key)


def _label(failure) -> str:
    return f"{failure.collection or '-'}/{failure.item_id}/{failure.asset_key}"


def _path_metadata(href: str) -> dg.MetadataValue:
    return dg.MetadataValue.path(href[len("file://"):]) if href.startswith("file://") else dg.MetadataValue.url(href)


def _search_results(context: dg.AssetExecutionContext, config: SearchSpec, stac_api: StacApiResource,
                   package: PackageResource, storage: StorageResource, rewrite: RewriteResource,
                   partitions: PartitionsResource) -> dg.MaterializeResult:
    registry = storage.registry(rewrite)
    root = package.root(registry, _partition(context))
    request = stac_api.request(config, **_partition_search(context, partitions, registry))
    with package.writing(root, registry, "search_results") as scratch:
        summary = stac_api.search(request, scratch / "items.ndjson")
        record = {**summary.request, "returned": summary.returned, "matched": summary.matched,
                  "duplicates_dropped": summary.duplicates_dropped, "pages": summary.pages}
        (scratch / "request.json").write_text(json.dumps(record, indent=2))
        items_href = package.publish(scratch / "items.ndjson", root, LAYOUT.search_items, registry,
                                     "application/x-ndjson")
        package.publish(scratch / "request.json", root, LAYOUT.search_request, registry, "application/json")
    context.log.info(f"search returned {summary.returned} items in {summary.pages} page(s)")
    matched = {"matched": summary.matched} if summary.matched is not None else {}  # not every API counts
    return dg.MaterializeResult(metadata={
        "request": dg.MetadataValue.json(summary.request),
        "returned": summary.returned,
        **matched,
        "pages": summary.pages,
        "duplicates_dropped": summary.duplicates_dropped,
        **({"duplicate_ids": dg.MetadataValue.json(summary.duplicate_ids)} if summary.duplicate_ids else {}),
        "signed_hrefs_stripped": summary.signed_hrefs_stripped,
        "retries": summary.retries,
        "client_retries": registry.request_retries(),
        "seconds": summary.seconds,
        "path": _path_metadata(items_href),
        "dagster/row_count": summary.returned,
    })


def _partition_search(context: dg.AssetExecutionContext, partitions: PartitionsResource, registry) -> dict:
    """What a partition fixes in the search: its acquisition window ``[start, end)``, its area (bbox or
    intersects) or its collection; these win over the default search and the run's config."""
    if not context.has_partition_key:
        return {}
    partitions_def = context.assets_def.partitions_def
    time_key, other_key = split_key(partitions_def, context.partition_key)
    fixed = {}
    if time_key is not None:
        window = time_partitions_def(partitions_def).time_window_for_partition_key(time_key)
        fixed["datetime"] = search_window(window)
    if other_key is not None:
        fixed.update(partitions.search(other_key, registry))
    return fixed


def _footprints(context: dg.AssetExecutionContext, items: Path, partitions: PartitionsResource,
                registry) -> dict[str, dg.MetadataValue]:
    """The footprint map of the items (and of the partition's area) as an inline Markdown image.

    Only a picture: a failure to draw it is logged, never fails the step."""
    area, name = None, None
    try:
        if context.has_partition_key and partitions.dimension == "area":
            _, name = split_key(context.assets_def.partitions_def, context.partition_key)
            area = partitions.area_geometry(name, registry)
        fmap = footprint_map_of_parquet(items, area=area)
    except Exception as exc:  # a picture only
        context.log.warning(f"no footprint map: {type(exc).__name__}: {exc}")
        return {}
    metadata = {"footprints": dg.MetadataValue.md(fmap.markdown(area=f"'{name}'" if area is not None else None))}
    if fmap.extent is not None:
        metadata["extent"] = dg.MetadataValue.json(list(fmap.extent))
    return metadata


def _items_parquet(context: dg.AssetExecutionContext, package: PackageResource, storage: StorageResource,
                  rewrite: RewriteResource, partitions: PartitionsResource) -> dg.MaterializeResult:
    registry = storage.registry(rewrite)
    root = package.root(registry, _partition(context))
    with package.writing(root, registry, "items_parquet") as scratch:
        ndjson = package.fetch(root, LAYOUT.search_items, registry, scratch)
        summary = ndjson_to_geoparquet(ndjson, scratch / "items.parquet",
                                       source_name=root.child(LAYOUT.search_items).href())
        href = package.publish(scratch / "items.parquet", root, LAYOUT.items, registry, PARQUET)
        footprints = _footprints(context, scratch / "items.parquet", partitions, registry)
    return dg.MaterializeResult(metadata={
        "items": summary.items,
        "assets": summary.assets,
        "collections": dg.MetadataValue.json(summary.collections),
        "asset_keys": dg.MetadataValue.json(summary.asset_keys),
        "items_without_assets": summary.items_without_assets,
        "duplicates_dropped": summary.duplicates_dropped,
        "signed_hrefs_stripped": summary.signed_hrefs_stripped,
        "file_mib": mib(summary.bytes),
        "path": _path_metadata(href),
        **footprints,
        "dagster/row_count": summary.items,
    })


class LockConfig(dg.Config):
    """Per-run overrides of the deployment's lock policy."""

    checksum: bool | None = Field(default=None, description="Read every object to record its sha256.")
    concurrency: int | None = Field(default=None, description="HEAD requests in flight.")


def _assets_lock(context: dg.AssetExecutionContext, config: LockConfig, package: PackageResource,
                storage: StorageResource, rewrite: RewriteResource) -> dg.MaterializeResult:
    registry = storage.registry(rewrite)
    root = package.root(registry, _partition(context))
    checksum = package.checksum if config.checksum is None else config.checksum
    with package.writing(root, registry, "assets_lock") as scratch:
        items = package.fetch(root, LAYOUT.items, registry, scratch)
        summary = build_lock(iter_items(items), registry, scratch / "lock.parquet", checksum=checksum,
                             concurrency=config.concurrency or package.lock_concurrency,
                             assets=AssetFilter(package.include_asset_keys, package.exclude_asset_keys))
        write_failures(scratch / "failures.parquet", summary.failures)
        package.publish(scratch / "failures.parquet", root, LAYOUT.lock_failures, registry, PARQUET)
        if summary.failures:
            raise dg.Failure(
                description=f"{len(summary.failures)} asset(s) could not be locked, so the lock was not written "
                            f"(they are listed in {LAYOUT.lock_failures}). First: {_label(summary.failures[0])}: {summary.failures[0].error}. "
                            "Mend the hrefs with a rewrite rule or storage profile, or leave those assets out "
                            "with package.exclude_asset_keys.",
                metadata={"failures": failures_table(summary.failures), "failed": len(summary.failures),
                          "locked": summary.rows},
                allow_retries=_any_transient(summary.failures))
        href = package.publish(scratch / "lock.parquet", root, LAYOUT.lock, registry, PARQUET)
    yield dg.MaterializeResult(metadata={
        "rows": summary.rows,
        "total_mib": mib(summary.bytes),
        "checksums": summary.checksums,
        "stores": summary.stores,
        "seconds": round(summary.seconds, 3),
        "heads_per_second": rate(summary.rows, summary.seconds),
        "retries": summary.retries,
        "client_retries": registry.request_retries(),
        "path": _path_metadata(href),
        "dagster/row_count": summary.rows,
    })
    yield dg.AssetCheckResult(check_name="lock_complete", passed=not summary.failures,
                              metadata={"locked": summary.rows, "failed": len(summary.failures)})


class RelocationConfig(dg.Config):
    """Per-run overrides of the deployment's relocation policy."""

    key_template: str | None = Field(default=None, description="e.g. '{collection}/{item_id}/{asset_key}{ext}'.")
    concurrency: int | None = None
    memory_limit_mib: int | None = None
    verify: str | None = Field(default=None, description="'checksum' (read back) or 'size'.")


def _relocated_assets(context: dg.AssetExecutionContext, config: RelocationConfig, package: PackageResource,
                     storage: StorageResource, rewrite: RewriteResource):
    registry = storage.registry(rewrite)
    partition = _partition(context)
    root, target = package.root(registry, partition), package.target(registry, partition)
    verify = config.verify or package.verify
    if verify not in ("checksum", "size"):
        raise dg.Failure(f"relocation verify {verify!r} is unknown: use 'checksum' or 'size'", allow_retries=False)
    settings = RelocationSettings(
        concurrency=config.concurrency or package.relocation_concurrency,
        memory_limit=(config.memory_limit_mib or package.memory_limit_mib) * MiB,
        chunk_size=package.chunk_size_mib * MiB, put_concurrency=package.put_concurrency, verify=verify,
        key_template=config.key_template or package.key_template)
    with package.writing(root, registry, "relocated_assets") as scratch:
        lock = package.fetch(root, LAYOUT.lock, registry, scratch / "in")
        summary = relocate(lock, target, registry, scratch / "relocated.parquet", scratch / "failures.parquet",
                           settings)
        package.publish(scratch / "failures.parquet", root, LAYOUT.relocation_failures, registry, PARQUET)
        lock_href = package.publish(scratch / "relocated.parquet", root, LAYOUT.relocated_lock, registry, PARQUET)
        items_href = _publish_enriched_items(package, root, registry, scratch, scratch / "relocated.parquet")
    metadata = {
        "copied": summary.copied,
        "already_present": summary.present,
        "server_side_copies": summary.server_side,
        "failed": len(summary.failures),
        "copied_mib": mib(summary.bytes_copied),
        "total_mib": mib(summary.bytes_total),
        "throughput_mib_per_s": round(summary.throughput / MiB, 2),
        "retries": summary.retries,
        "client_retries": registry.request_retries(),
        "peak_reserved_mib": mib(summary.peak_reserved_bytes),
        "verified": dg.MetadataValue.json(summary.verified),
        "memory_limit_mib": mib(settings.memory_limit),
        "seconds": round(summary.seconds, 3),
        "target": dg.MetadataValue.text(target.href()),
        "lock": _path_metadata(lock_href),
        "items": _path_metadata(items_href),
        "dagster/row_count": summary.rows - len(summary.failures),
    }
    if summary.cleanup is not None:  # what killed runs had left under the target
        metadata["cleanup"] = dg.MetadataValue.json(summary.cleanup.as_record())
    if summary.lease_taken_over:
        metadata["lease_taken_over"] = dg.MetadataValue.text(summary.lease_taken_over)
        context.log.warning(f"took over the target's lease from {summary.lease_taken_over}")
    if summary.failures:
        raise dg.Failure(
            description=f"{len(summary.failures)} of {summary.rows} asset(s) failed to relocate; they are in "
                        f"{LAYOUT.relocation_failures}, not in the new lock. First: {_label(summary.failures[0])}: "
                        f"{summary.failures[0].error}",
            metadata={**metadata, "failures": failures_table(summary.failures)},
            allow_retries=_any_transient(summary.failures))
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(check_name="relocation_complete", passed=True,
                              metadata={"relocated": summary.rows, "failed": 0})


def _publish_enriched_items(package: PackageResource, root, registry, scratch: Path, relocated_lock: Path) -> str:
    items = package.fetch(root, LAYOUT.items, registry, scratch / "items")
    enriched = write_enriched_items(items, relocated_lock, scratch / "enriched.parquet",
                                    alternate_name=package.alternate_name, workdir=scratch)
    return package.publish(enriched, root, LAYOUT.relocated_items, registry, PARQUET)


class ValidationConfig(dg.Config):
    deep: bool | None = Field(default=None, description="Re-read every object and compare sha256.")
    lock: str = Field(default="relocated", description="'relocated' (the copies) or 'source' (the originals).")


def _validation_report(context: dg.AssetExecutionContext, config: ValidationConfig, package: PackageResource,
                      storage: StorageResource, rewrite: RewriteResource):
    registry = storage.registry(rewrite)
    root = package.root(registry, _partition(context))
    lock_path = {"relocated": LAYOUT.relocated_lock, "source": LAYOUT.lock}.get(config.lock)
    if lock_path is None:
        raise dg.Failure(f"validation lock {config.lock!r} is unknown: use 'relocated' or 'source'",
                         allow_retries=False)
    deep = package.deep_validation if config.deep is None else config.deep
    with package.writing(root, registry, "validation_report") as scratch:
        lock = package.fetch(root, lock_path, registry, scratch / "in")
        summary = validate(lock, registry, scratch / "report.parquet", deep=deep,
                           concurrency=package.lock_concurrency)
        href = package.publish(scratch / "report.parquet", root, LAYOUT.validation_report, registry, PARQUET)
    counts = summary.counts
    markdown = "\n".join([
        f"**{'Clean' if summary.clean else 'Drift found'}**: {counts['ok']} of {summary.rows} objects match "
        f"their lock ({'deep: sha256 re-read' if deep else 'quick: size, ETag, last modified'}).",
        "",
        "| status | objects |", "|---|---|",
        *[f"| {status} | {n} |" for status, n in counts.items()],
        "",
        f"Checked {mib(summary.bytes_checked)} MiB, read {mib(summary.bytes_read)} MiB in {summary.seconds:.2f} s.",
    ])
    metadata = {
        "summary": dg.MetadataValue.md(markdown),
        **{f"{status}": n for status, n in counts.items()},
        "deep": deep,
        "checked_mib": mib(summary.bytes_checked),
        "retries": summary.retries,
        "client_retries": registry.request_retries(),
        "seconds": round(summary.seconds, 3),
        "report": _path_metadata(href),
        "lock": dg.MetadataValue.text(config.lock),
        "dagster/row_count": summary.rows,
    }
    if summary.first_failures:
        metadata["first_failures"] = records_table(summary.first_failures)
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="validation_clean", passed=summary.clean, severity=dg.AssetCheckSeverity.ERROR,
        description=None if summary.clean else f"{summary.drifted} of {summary.rows} objects drifted",
        metadata={"drifted": summary.drifted, "rows": summary.rows,
                  **({"first_failures": records_table(summary.first_failures)} if summary.first_failures else {})})


def _any_transient(failures) -> bool:
    """Retrying the step helps only if some row failed for a reason that can pass (a re-run resumes)."""
    return any(f.error_code == "transient" for f in failures)


def _fail_fast(fn):
    """Engine errors that another attempt cannot mend (bad settings, wrong credentials, a wrong lock, a
    keystore that will not open) fail the step at once instead of going through the retry policy's
    backoff; transient store errors keep their retries."""

    def as_failure(exc: PackagerError) -> dg.Failure:
        return dg.Failure(description=str(exc), allow_retries=bool(getattr(exc, "retryable", False)))

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def run_steps(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except PackagerError as exc:
                raise as_failure(exc) from exc
        return run_steps

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PackagerError as exc:
            raise as_failure(exc) from exc
    return run


def build_chain(settings: Settings | None = None) -> list[dg.AssetsDefinition]:
    """The five assets, partitioned as ``settings.partitions`` says, with retries and per-backend pools.

    Pools (and the ``stac-packager/store`` op tag) name the backend a step loads most: the STAC API for
    the search, the package store for items and lock, the relocation target's store for relocation and
    validation. Limit them in the instance's ``concurrency.pools`` so a backfill cannot overload one store.
    """
    settings = settings or Settings()
    partitions_def = build_partitions_def(settings.partitions)
    retry = retry_policy(settings.retries)
    package_kind, target_kind = store_kind(settings.package.url), store_kind(settings.relocation.target)

    def check(name: str, **kwargs) -> dg.AssetCheckSpec:
        # Partitioned like its asset, so each result names its partition (unpartitioned checks of a
        # partitioned asset record the result without one and a dangling SKIPPED per partition).
        # Still a preview in 1.13.27; the warning is known and silenced here only.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.AssetCheckSpec(name, partitions_def=partitions_def, **kwargs)

    def asset(fn, name: str, kind: str | None, **kwargs) -> dg.AssetsDefinition:
        pool = f"store-{kind}" if kind else STAC_API_POOL
        return dg.asset(_fail_fast(fn), name=name, group_name=GROUP, partitions_def=partitions_def, retry_policy=retry,
                        pool=pool, op_tags={STORE_TAG: kind or STAC_API_POOL}, **kwargs)

    return [
        asset(_search_results, "search_results", None, kinds={"stac"},
              description="Items returned by a STAC API search, as NDJSON, with the exact request recorded."),
        asset(_items_parquet, "items_parquet", package_kind, kinds={"parquet"}, deps=["search_results"],
              description="The searched items as conformant STAC GeoParquet (stac-geoparquet)."),
        asset(_assets_lock, "assets_lock", package_kind, kinds={"parquet"}, deps=["items_parquet"],
              check_specs=[check("lock_complete", asset="assets_lock",
                                             description="Every asset listed in items.parquet is locked.")],
              description="assets.lock.parquet: one row per asset with the live object's size, ETag, last "
                          "modified (and sha256 when asked); readable by stacpkg."),
        asset(_relocated_assets, "relocated_assets", target_kind, kinds={"parquet"}, deps=["assets_lock"],
              check_specs=[check("relocation_complete", asset="relocated_assets",
                                             description="Every locked asset was copied and verified.")],
              description="Every locked object copied to the relocation target, verified; a new lock for the "
                          "copies and items enriched with alternate hrefs and file:size / file:checksum."),
        asset(_validation_report, "validation_report", target_kind, kinds={"parquet"}, deps=["relocated_assets"],
              check_specs=[check("validation_clean", asset="validation_report",
                                             description="Every locked object matches its lock (no drift).")],
              description="The relocated lock checked against the live objects: a report parquet, one row per "
                          "asset."),
    ]


CHAIN = build_chain()
"""The unpartitioned chain on default settings (what the demo and the chain tests materialize)."""
search_results, items_parquet, assets_lock, relocated_assets, validation_report = CHAIN
