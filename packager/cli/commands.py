"""The commands. Each calls the engine functions the Dagster assets call (``pipelines/assets.py``) and
publishes the same package files (:data:`packager.package.LAYOUT`)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from packager.cli.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Failed,
    Runtime,
    UsageError,
    parse_size,
    split_list,
)
from packager.package import LAYOUT

PARQUET = "application/vnd.apache.parquet"
MiB = 1 << 20


def _mib(n: int | None) -> float:
    return round((n or 0) / MiB, 3)


# -- search ------------------------------------------------------------------------------------------
def _json_arg(name: str, value: str | None) -> Any:
    """A JSON option given inline or as a file path."""
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith(("{", "[")):
        path = Path(value)
        if not path.is_file():
            raise UsageError(f"--{name} {value!r} is neither JSON nor an existing file")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{name}: not valid JSON ({exc})") from None


def cmd_search(rt: Runtime) -> int:
    from pydantic import ValidationError

    from packager.items import ndjson_to_geoparquet
    from packager.search import SearchRequest

    a = rt.args
    overrides: dict[str, Any] = {}
    if a.collections:
        overrides["collections"] = split_list(a.collections)
    if a.bbox:
        try:
            overrides["bbox"] = [float(v) for v in a.bbox.split(",")]
        except ValueError:
            raise UsageError(f"--bbox {a.bbox!r}: give comma-separated numbers xmin,ymin,xmax,ymax") from None
    if a.intersects:
        geometry = _json_arg("intersects", a.intersects)
        overrides["intersects"] = geometry.get("geometry", geometry) if geometry.get("type") == "Feature" else geometry
    for name in ("datetime", "sortby"):
        if getattr(a, name):
            overrides[name] = getattr(a, name)
    if a.ids:
        overrides["ids"] = split_list(a.ids)
    if a.filter:
        overrides["filter"] = _json_arg("filter", a.filter) if a.filter.lstrip().startswith("{") else a.filter
    if a.query:
        overrides["query"] = _json_arg("query", a.query)
    if a.limit is not None:
        overrides["limit"] = a.limit
    if a.max_items is not None:
        overrides["max_items"] = a.max_items
    if a.method:
        overrides["method"] = a.method
    stac_api = rt.resources.stac_api
    base = {} if a.no_default_search else stac_api.default_search.overrides()
    try:
        request = SearchRequest(**{**base, **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'search'}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"search request: {problems}") from None
    api = a.url or stac_api.url
    if a.url:
        from packager.search import search_to_ndjson

        def run(out: Path):
            return search_to_ndjson(a.url, request, out, headers=stac_api.headers, max_retries=stac_api.max_retries)
    else:
        def run(out: Path):
            return stac_api.search(request, out)
    scratch = rt.scratch()
    rt.info(f"searching {api} ...")
    summary = run(scratch / "items.ndjson")
    record = {**summary.request, "api": api, "returned": summary.returned, "matched": summary.matched,
              "duplicates_dropped": summary.duplicates_dropped, "pages": summary.pages,
              "signed_hrefs_stripped": summary.signed_hrefs_stripped}
    written: dict[str, str] = {}
    if a.package:
        package = rt.package(a.package)
        (scratch / "request.json").write_text(json.dumps(record, indent=2))
        written["items"] = package.publish(scratch / "items.ndjson", LAYOUT.search_items, "application/x-ndjson")
        written["request"] = package.publish(scratch / "request.json", LAYOUT.search_request, "application/json")
    if a.output:
        out = Path(a.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() in (".parquet", ".geoparquet"):
            if summary.returned:
                ndjson_to_geoparquet(scratch / "items.ndjson", out)
            else:
                raise Failed(f"the search returned no items; {out} was not written")
        else:
            from packager.atomic import atomic_path

            with atomic_path(out) as tmp:
                tmp.write_bytes((scratch / "items.ndjson").read_bytes())
        written["output"] = str(out)
    if not a.output and not a.package:
        sys.stdout.buffer.write((scratch / "items.ndjson").read_bytes())
        sys.stdout.flush()
    result = {"returned": summary.returned, "matched": summary.matched, "pages": summary.pages,
              "retries": summary.retries, "seconds": round(summary.seconds, 3), "request": summary.request,
              "duplicates_dropped": summary.duplicates_dropped, "duplicate_ids": summary.duplicate_ids,
              "signed_hrefs_stripped": summary.signed_hrefs_stripped, "written": written}
    if rt.json and (a.output or a.package):
        rt.emit_json(result)
    else:
        rt.info(f"{summary.returned} item(s) in {summary.pages} page(s)"
                + (f" of {summary.matched} matched" if summary.matched is not None else "")
                + "".join(f"\n  {k}: {v}" for k, v in written.items()))
    _note_search_skips(rt, summary)
    return EXIT_OK


def _note_search_skips(rt: Runtime, summary) -> None:
    """Say on stderr what the search left out or changed (not with --quiet)."""
    if rt.quiet:
        return
    if summary.duplicates_dropped:
        shown = ", ".join(summary.duplicate_ids) + (", ..." if summary.duplicates_dropped > len(summary.duplicate_ids)
                                                    else "")
        rt.err.print(f"note: {summary.duplicates_dropped} duplicate item(s) dropped: the API returned them again on a "
                     f"later page (the data changed while paging); the first copy is kept: {shown}", markup=False)
    if summary.signed_hrefs_stripped:
        rt.err.print(f"note: signing query parameters removed from {summary.signed_hrefs_stripped} href(s); "
                     "signed URLs are not kept in packages (give the store's credentials in a storage profile)",
                     markup=False)


def _note_items_skips(rt: Runtime, name: str, items_summary) -> None:
    """Say on stderr which items were left out, kept without assets, or had secrets removed."""
    if rt.quiet:
        return
    s = items_summary
    if s.items_without_assets:
        more = ", ..." if s.items_without_assets > len(s.items_without_assets_sample) else ""
        rt.err.print(f"note: {s.items_without_assets} item(s) of {name} have no assets: kept in items.parquet, "
                     f"nothing to lock for them: {', '.join(s.items_without_assets_sample)}{more}", markup=False)
    if s.duplicates_dropped:
        rt.err.print(f"note: {s.duplicates_dropped} exact repeat(s) of an earlier item in {name} left out",
                     markup=False)
    if s.signed_hrefs_stripped:
        rt.err.print(f"note: signing query parameters removed from {s.signed_hrefs_stripped} href(s) of {name}; "
                     "signed URLs are not kept in packages (give the store's credentials in a storage profile)",
                     markup=False)


# -- build -------------------------------------------------------------------------------------------
def _hold_package_lease(rt: Runtime, package, command: str) -> None:
    """One writer per package (packager.lease), held until the command ends; --break-lease takes it over."""
    from packager.package import package_lease

    rt._stack.enter_context(package_lease(package.root, rt.registry, command=command,  # noqa: SLF001
                                          break_lease=bool(getattr(rt.args, "break_lease", False))))


def _asset_total(items_parquet: Path, include: list[str] | None, exclude: list[str]) -> int | None:
    """How many assets the lock will look at: non-null asset structs of the kept keys (for the progress bar)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(items_parquet, columns=["assets"]).column("assets").combine_chunks()
    except (KeyError, pa.ArrowInvalid):
        return None
    if not pa.types.is_struct(column.type):
        return None
    total = 0
    for i, f in enumerate(column.type):
        if (include is None or f.name in include) and f.name not in exclude:
            total += pc.sum(pc.and_(pc.is_valid(column.field(i)), pc.is_valid(column))).as_py() or 0
    return total


def cmd_build(rt: Runtime) -> int:
    from packager.cli.inputs import items_as_ndjson
    from packager.items import iter_items, ndjson_to_geoparquet
    from packager.lock import AssetFilter, build_lock, write_failures

    a = rt.args
    scratch = rt.scratch()
    source = items_as_ndjson(a.input, scratch)
    # the items are converted (and bad input refused, naming file and line) in the scratch folder first:
    # before the settings, the stores or the package are touched
    items_summary = ndjson_to_geoparquet(source.path, scratch / "items.parquet", source_name=source.name,
                                         unit=source.unit)
    pkg_settings = rt.settings.package
    package = rt.package(a.package)
    _hold_package_lease(rt, package, "build")
    include = split_list(a.include_asset_keys) if a.include_asset_keys else pkg_settings.include_asset_keys
    exclude = split_list(a.exclude_asset_keys) if a.exclude_asset_keys is not None else pkg_settings.exclude_asset_keys
    checksum = pkg_settings.checksum if a.checksum is None else a.checksum
    concurrency = a.concurrency or pkg_settings.lock_concurrency
    rt.info(f"items from {a.input} ({source.kind}) -> {package.root.href()}")
    _note_items_skips(rt, source.name, items_summary)
    total = _asset_total(scratch / "items.parquet", include, exclude)
    with rt.progress("lock" + (" + sha256" if checksum else ""), total) as update:
        summary = build_lock(iter_items(scratch / "items.parquet"), rt.registry, scratch / "lock.parquet",
                             checksum=checksum, concurrency=concurrency, assets=AssetFilter(include, exclude),
                             progress=lambda done: update(done, total))
    write_failures(scratch / "failures.parquet", summary.failures)
    package.publish(scratch / "failures.parquet", LAYOUT.lock_failures, PARQUET)
    result = {
        "package": package.root.href(), "items": items_summary.items, "collections": items_summary.collections,
        "asset_keys": items_summary.asset_keys, "locked": summary.rows, "failed": len(summary.failures),
        "items_without_assets": items_summary.items_without_assets,
        "items_without_assets_sample": items_summary.items_without_assets_sample,
        "duplicates_dropped": items_summary.duplicates_dropped,
        "signed_hrefs_stripped": items_summary.signed_hrefs_stripped,
        "bytes": summary.bytes, "checksums": summary.checksums, "seconds": round(summary.seconds, 3),
        "files": {},
        "failures": [f.as_record() for f in summary.failures[:20]],
    }
    if not summary.failures:
        # items and lock are published together, only once both are whole: a failed build leaves the
        # package as it was (a previous build's items.parquet still matches its lock), not new items
        # beside an old lock
        result["files"]["items"] = package.publish(scratch / "items.parquet", LAYOUT.items, PARQUET)
        result["files"]["lock"] = package.publish(scratch / "lock.parquet", LAYOUT.lock, PARQUET)
    if rt.json:
        rt.emit_json(result)
    elif not rt.quiet:
        rt.err.print(f"{items_summary.items} item(s), {summary.rows} asset(s) locked ({_mib(summary.bytes)} MiB"
                     f"{f', {summary.checksums} sha256' if checksum else ''}) in {summary.seconds:.2f} s")
        for name, href in result["files"].items():
            rt.err.print(f"  {name}: {href}")
    if summary.failures:
        for failure in summary.failures[:20]:
            rt.err.print(f"[red]not locked[/red] {failure.collection or '-'}/{failure.item_id}/{failure.asset_key}: "
                         f"{failure.error}", markup=True)
        raise Failed(f"{len(summary.failures)} asset(s) could not be locked, so neither {LAYOUT.items} nor "
                     f"{LAYOUT.lock} was written "
                     f"(listed in {LAYOUT.lock_failures}); mend them with a rewrite rule or storage profile in the "
                     "settings, or leave them out with --exclude-asset-keys")
    return EXIT_OK


# -- inspect -----------------------------------------------------------------------------------------
def cmd_inspect(rt: Runtime) -> int:
    from packager.cli.report import inspect_package, render_markdown, render_text

    package = rt.package(rt.args.package)
    info = inspect_package(package)
    fmt = "json" if rt.json else rt.args.format
    if fmt == "json":
        rt.emit_json(info)
    elif fmt == "markdown":
        sys.stdout.write(render_markdown(info))
    else:
        render_text(info, rt.out)
    return EXIT_OK


# -- validate ----------------------------------------------------------------------------------------
def _lock_source(rt: Runtime, package_arg: str | None, which: str):
    """``(package or None, local lock path, lock name)`` for validate and relocate."""
    if package_arg and package_arg.endswith(".parquet") and Path(package_arg).is_file():
        return None, Path(package_arg), package_arg
    package = rt.package(package_arg)
    if which == "auto":
        which = "relocated" if package.exists(LAYOUT.relocated_lock) else "source"
    relative = {"relocated": LAYOUT.relocated_lock, "source": LAYOUT.lock}.get(which)
    if relative is None:
        if Path(which).is_file():
            return package, Path(which), which
        raise UsageError(f"--lock {which!r}: use 'source', 'relocated', 'auto' or the path of a lock file")
    hint = "run `stac-packager relocate` first" if which == "relocated" else "run `stac-packager build` first"
    return package, package.fetch(relative, hint=hint), relative


def cmd_validate(rt: Runtime) -> int:
    import pyarrow.parquet as pq

    from packager.validate import validate

    a = rt.args
    package, lock_path, lock_name = _lock_source(rt, a.package, a.lock)
    from packager.lock import count_rows

    total = count_rows(lock_path)  # a lock with a wrong schema, or cut short, fails here: before any store is read
    deep = rt.settings.validation.deep if a.deep is None else a.deep
    scratch = rt.scratch()
    with rt.progress(f"validate {'deep' if deep else 'quick'}", total) as update:
        summary = validate(lock_path, rt.registry, scratch / "report.parquet", deep=deep,
                           concurrency=a.concurrency or rt.settings.package.lock_concurrency, progress=update)
    report_href = None
    if a.report:
        from packager.publish import package_location, publish
        report_href = publish(scratch / "report.parquet", package_location(a.report, rt.registry), rt.registry,
                              content_type=PARQUET)
    elif package is not None and not a.no_report:
        report_href = package.publish(scratch / "report.parquet", LAYOUT.validation_report, PARQUET)
    for batch in pq.ParquetFile(scratch / "report.parquet").iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            if a.only_failures and record["status"] == "ok":
                continue
            sys.stdout.write(json.dumps({"asset": f"{record['collection'] or '-'}/{record['item_id']}/"
                                                  f"{record['asset_key']}", **record}, default=str) + "\n")
    result = {"lock": lock_name, "rows": summary.rows, "counts": summary.counts, "clean": summary.clean,
              "deep": deep, "unverifiable_checksums": summary.unverifiable_checksums,
              "bytes_checked": summary.bytes_checked, "bytes_read": summary.bytes_read,
              "seconds": round(summary.seconds, 3), "report": report_href}
    if rt.json:
        rt.emit_json({"summary": result})
    sys.stdout.flush()
    if not rt.quiet and not rt.json:
        counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
        rt.err.print(f"{lock_name}: {summary.rows} object(s) checked ({'deep' if deep else 'quick'}): {counts} "
                     f"in {summary.seconds:.2f} s" + (f"\n  report: {report_href}" if report_href else ""))
    if not summary.clean:
        for brief in summary.first_failures:
            rt.err.print(f"{brief['status'].upper()} {brief['asset']}: {brief['detail']}", markup=False)
        if summary.rows == 0:
            raise Failed(f"{lock_name} has no rows: nothing was validated")
        raise Failed(f"{summary.drifted} of {summary.rows} object(s) drifted from {lock_name}")
    return EXIT_OK


# -- relocate ----------------------------------------------------------------------------------------
def _relocation_settings(rt: Runtime):
    from packager.relocate import RelocationSettings
    from packager.templates import DEFAULT_TEMPLATE

    a, r = rt.args, rt.settings.relocation
    return RelocationSettings(
        concurrency=a.concurrency or r.concurrency,
        memory_limit=parse_size(a.memory_limit) if a.memory_limit else r.memory_limit_mib * MiB,
        chunk_size=parse_size(a.chunk_size) if a.chunk_size else r.chunk_size_mib * MiB,
        put_concurrency=r.put_concurrency, verify=a.verify or r.verify,
        key_template=a.key_template or r.key_template or DEFAULT_TEMPLATE)


def cmd_relocate(rt: Runtime) -> int:
    from packager.publish import package_location
    from packager.relocate import plan_relocation, relocate
    from packager.templates import KeyTemplate

    a = rt.args
    if a.key_template:
        KeyTemplate(a.key_template)  # a template that leaves the target is refused before anything is opened
    package, lock_path, lock_name = _lock_source(rt, a.package, a.lock)
    from packager.lock import count_rows

    total = count_rows(lock_path)  # a lock with a wrong schema, or cut short, fails here: before any byte moves
    settings = _relocation_settings(rt)
    target_url = a.target or rt.settings.relocation.target
    target = package_location(target_url, rt.registry)
    if a.dry_run:
        planned = plan_relocation(lock_path, target, KeyTemplate(settings.key_template))
        for row, dest in planned:
            if rt.json:
                rt.emit_json({"asset": row.label(), "source": row.location.href(), "destination": dest.href(),
                              "size_bytes": row.size})
            else:
                sys.stdout.write(f"{row.location.href()} -> {dest.href()}\n")
        rt.info(f"{len(planned)} object(s) would be copied under {target.href()} with template "
                f"{settings.key_template!r}; nothing was copied (dry run)")
        return EXIT_OK
    if package is None:
        raise UsageError("relocate needs a package (it writes relocated/assets.lock.parquet and relocated/items.parquet "
                         "there); give the package folder or URL, or --dry-run for a lock file alone")
    _hold_package_lease(rt, package, "relocate")
    settings = dataclasses.replace(settings, break_lease=bool(getattr(a, "break_lease", False)))
    scratch = rt.scratch()
    if package.exists(LAYOUT.items):  # so does a damaged items.parquet (read after the copies)
        from packager.items import open_items_parquet

        open_items_parquet(package.fetch(LAYOUT.items))
    with rt.progress("relocate", total) as update:
        summary = relocate(lock_path, target, rt.registry, scratch / "relocated.parquet", scratch / "failures.parquet",
                           settings, progress=update)
    package.publish(scratch / "failures.parquet", LAYOUT.relocation_failures, PARQUET)
    lock_href = package.publish(scratch / "relocated.parquet", LAYOUT.relocated_lock, PARQUET)
    items_href = None
    if package.exists(LAYOUT.items):
        items_href = _publish_enriched_items(package, scratch, scratch / "relocated.parquet",
                                             a.alternate_name or rt.settings.relocation.alternate_name)
    result = {"lock": lock_name, "target": target.href(), "rows": summary.rows, "copied": summary.copied,
              "already_present": summary.present, "server_side_copies": summary.server_side,
              "failed": len(summary.failures), "bytes_copied": summary.bytes_copied, "bytes_total": summary.bytes_total,
              "retries": summary.retries, "peak_reserved_bytes": summary.peak_reserved_bytes,
              "cleanup": summary.cleanup.as_record() if summary.cleanup else None,
              "lease_taken_over": summary.lease_taken_over,
              "memory_limit_bytes": settings.memory_limit, "seconds": round(summary.seconds, 3),
              "files": {"relocated_lock": lock_href, "relocated_items": items_href},
              "failures": [f.as_record() for f in summary.failures[:20]]}
    if rt.json:
        rt.emit_json(result)
    elif not rt.quiet:
        rt.err.print(f"{summary.copied} copied, {summary.present} already there, {len(summary.failures)} failed; "
                     f"{_mib(summary.bytes_copied)} MiB in {summary.seconds:.2f} s -> {target.href()}\n"
                     f"  relocated lock: {lock_href}" + (f"\n  relocated items: {items_href}" if items_href else ""))
    if summary.failures:
        for failure in summary.failures[:20]:
            rt.err.print(f"FAILED {failure.collection or '-'}/{failure.item_id}/{failure.asset_key}: {failure.error}",
                         markup=False)
        raise Failed(f"{len(summary.failures)} of {summary.rows} asset(s) failed to relocate; they are in "
                     f"{LAYOUT.relocation_failures}, not in the new lock")
    return EXIT_OK


def _publish_enriched_items(package, scratch: Path, relocated_lock: Path, alternate_name: str) -> str:
    """relocated/items.parquet: the items with alternate hrefs and file:size/file:checksum (as the chain does)."""
    from packager.enrich import write_enriched_items

    enriched = write_enriched_items(package.fetch(LAYOUT.items), relocated_lock, scratch / "enriched.parquet",
                                    alternate_name=alternate_name, workdir=scratch)
    return package.publish(enriched, LAYOUT.relocated_items, PARQUET)


# -- push / pull -------------------------------------------------------------------------------------
def cmd_push(rt: Runtime) -> int:
    from packager import oci

    a = rt.args
    with rt.progress("push", None) as update:
        summary = oci.push(Path(a.package), a.reference, plain_http=a.plain_http, insecure=a.insecure,
                           auth_backend=a.auth_backend, progress=update)
    result = {"reference": summary.reference, "digest": summary.digest, "bytes": summary.bytes,
              "layers": [{"title": layer["annotations"][oci.TITLE], "digest": layer["digest"], "size": layer["size"],
                          "media_type": layer["mediaType"]} for layer in summary.layers]}
    if rt.json:
        rt.emit_json(result)
    else:
        sys.stdout.write(f"{oci.pinned_reference(a.reference, summary.digest)}\n")
        rt.info(f"pushed {len(summary.layers)} file(s), {_mib(summary.bytes)} MiB to {a.reference}")
    return EXIT_OK


def cmd_pull(rt: Runtime) -> int:
    from packager import oci

    a = rt.args
    with rt.progress("pull", None) as update:
        summary = oci.pull(a.reference, Path(a.output), plain_http=a.plain_http, insecure=a.insecure,
                           auth_backend=a.auth_backend, progress=update)
    result = {"reference": summary.reference, "output": summary.output, "artifact_type": summary.artifact_type,
              "bytes": summary.bytes, "files": summary.files}
    if rt.json:
        rt.emit_json(result)
    else:
        rt.info(f"pulled {len(summary.files)} file(s), {_mib(summary.bytes)} MiB, every digest verified, into "
                f"{summary.output}")
    return EXIT_OK


# -- keys --------------------------------------------------------------------------------------------
def cmd_keys(rt: Runtime) -> int:
    try:
        from packager import keys
    except ImportError as exc:
        rt.err.print(f"stac-packager keys: the keystore commands are not installed in this build ({exc})", markup=False)
        return EXIT_USAGE
    if rt.config:
        os.environ.setdefault("STAC_PACKAGER_CONFIG", rt.config)
    argv = list(rt.args.keys_args or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        return int(keys.main(argv) or 0)
    except SystemExit as exc:  # argparse inside keys: --help (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE


# -- materialize -------------------------------------------------------------------------------------
def cmd_materialize(rt: Runtime) -> int:
    import dagster as dg

    from pipelines.assets import build_chain
    from pipelines.settings import build_resources

    a = rt.args
    if not rt.config:
        raise UsageError("materialize needs a settings file: --config FILE or STAC_PACKAGER_CONFIG")
    settings = rt.settings
    chain = build_chain(settings)
    rt.resources  # noqa: B018 - resolve {env: NAME} now, so a missing variable is a clear exit 2
    names = [key.to_user_string() for asset in chain for key in asset.keys]
    selection = None
    if a.select:
        selection = split_list([a.select])
        unknown = [s for s in selection if s not in names]
        if unknown:
            raise UsageError(f"--select: unknown asset(s) {', '.join(unknown)}; the chain's assets are {', '.join(names)}")
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    rt.info(f"materializing {', '.join(selection or names)} in-process"
            + (f" (partition {a.partition})" if a.partition else ""))
    result = dg.materialize(chain, selection=selection, resources=build_resources(settings), instance=instance,
                            partition_key=a.partition, raise_on_error=False,
                            tags={"stac-packager/trigger": "cli"})
    assets: dict[str, Any] = {}
    for name in selection or names:
        events = result.asset_materializations_for_node(name)
        assets[name] = ({k: v.value for k, v in events[0].metadata.items()
                         if isinstance(v.value, (int, float, str, bool, type(None)))} if events else None)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    failures = [str(e.event_specific_data.error.message).strip() for e in result.all_events
                if e.event_type_value == "STEP_FAILURE" and e.event_specific_data and
                getattr(e.event_specific_data, "error", None)]
    ok = result.success and all(checks.values())
    outcome = {"success": result.success, "run_id": result.run_id, "assets": assets, "checks": checks,
               "failures": failures}
    if rt.json:
        rt.emit_json(outcome)
    elif not rt.quiet:
        for name, meta in assets.items():
            rt.err.print(f"{name}: {'materialized' if meta is not None else 'NOT materialized'}", markup=False)
        for name, passed in checks.items():
            rt.err.print(f"check {name}: {'passed' if passed else 'FAILED'}", markup=False)
        for failure in failures:
            rt.err.print(f"step failed: {failure}", markup=False)
    return EXIT_OK if ok else EXIT_FAILED
