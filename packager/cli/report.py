"""``inspect``: what a package holds, from its files' metadata and columns (no asset is read or HEADed)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from packager.package import LAYOUT


def _value_counts(table: pa.Table, column: str) -> dict[str, int]:
    if column not in table.column_names:
        return {}
    counts = pc.value_counts(table.column(column).combine_chunks())
    return dict(sorted((str(v["values"]) if v["values"] is not None else "-", v["counts"]) for v in counts.to_pylist()))


def _items(path: Path) -> dict[str, Any]:
    from packager.items import open_items_parquet

    parquet = open_items_parquet(path)
    names = parquet.schema_arrow.names
    table = parquet.read(columns=[c for c in ("collection", "assets", "datetime") if c in names])
    info: dict[str, Any] = {"items": parquet.metadata.num_rows, "collections": _value_counts(table, "collection")}
    keys: dict[str, int] = {}
    if "assets" in table.column_names and pa.types.is_struct(table.schema.field("assets").type):
        column = table.column("assets").combine_chunks()
        for i, f in enumerate(column.type):
            keys[f.name] = pc.sum(pc.and_(pc.is_valid(column.field(i)), pc.is_valid(column))).as_py() or 0
    info["asset_keys"] = dict(sorted(keys.items()))
    info["assets"] = sum(keys.values())
    if "datetime" in table.column_names and table.num_rows:
        low, high = pc.min_max(table.column("datetime")).values()
        info["datetime"] = {"min": str(low.as_py()) if low.is_valid else None,
                            "max": str(high.as_py()) if high.is_valid else None}
    meta = parquet.schema_arrow.metadata or {}
    info["writer"] = ("stacpkg" if b"stacpkg:schema-kind" in meta
                      else "stac-geoparquet" if b"geo" in meta else "unknown")
    return info


def _lock(path: Path) -> dict[str, Any]:
    from packager.lock import open_lock

    parquet = open_lock(path)
    names = parquet.schema_arrow.names
    wanted = [c for c in ("collection", "asset_key", "store_type", "store_container", "size_bytes", "checksum")
              if c in names]
    table = parquet.read(columns=wanted)
    sizes = table.column("size_bytes") if "size_bytes" in table.column_names else None
    checksums = table.column("checksum") if "checksum" in table.column_names else None
    stores = Counter()
    if "store_type" in table.column_names:
        for kind, container in zip(table.column("store_type").to_pylist(),
                                   (table.column("store_container").to_pylist() if "store_container" in table.column_names
                                    else [None] * table.num_rows), strict=True):
            stores[f"{kind}://{container}" if container and "://" not in container else (container or kind or "-")] += 1
    meta = parquet.schema_arrow.metadata or {}
    return {
        "rows": parquet.metadata.num_rows,
        "known_bytes": (pc.sum(sizes).as_py() or 0) if sizes is not None else 0,
        "rows_with_size": (len(sizes) - sizes.null_count) if sizes is not None else 0,
        "rows_with_checksum": (len(checksums) - checksums.null_count) if checksums is not None else 0,
        "collections": _value_counts(table, "collection"),
        "asset_keys": _value_counts(table, "asset_key"),
        "stores": dict(sorted(stores.items())),
        "format": "stac-packager" if b"stac-packager:lock-version" in meta else "stacpkg v1",
    }


def _report(path: Path) -> dict[str, Any]:
    from packager.lock import open_parquet

    table = open_parquet(path, fix="re-run stac-packager validate").read(columns=["status"])
    return {"rows": table.num_rows, "counts": _value_counts(table, "status")}


def _files(package) -> list[dict[str, Any]]:
    local = package.local
    if local is not None:
        return [{"path": p.relative_to(local).as_posix(), "bytes": p.stat().st_size}
                for p in sorted(local.rglob("*")) if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(local).parts)]
    store = package.registry.store_for(package.root)
    prefix = package.root.key.rstrip("/") + "/"

    async def listing() -> list[dict[str, Any]]:
        return [{"path": obj.key[len(prefix):], "bytes": obj.facts.size} async for obj in store.list(prefix)]

    return sorted(asyncio.run(listing()), key=lambda f: f["path"])


def inspect_package(package) -> dict[str, Any]:
    from packager.cli.runtime import UsageError
    from packager.lock import open_parquet

    if not package.exists(LAYOUT.items) and not package.exists(LAYOUT.lock):
        raise UsageError(f"{package.url} is not a package: it has neither {LAYOUT.items} nor {LAYOUT.lock}")
    info: dict[str, Any] = {"package": package.root.href(), "files": _files(package)}
    if package.exists(LAYOUT.items):
        info["items"] = _items(package.fetch(LAYOUT.items))
    for name, relative, reader in (("lock", LAYOUT.lock, _lock), ("relocated_lock", LAYOUT.relocated_lock, _lock),
                                   ("validation", LAYOUT.validation_report, _report)):
        if package.exists(relative):
            info[name] = reader(package.fetch(relative))
    for name, relative in (("lock_failures", LAYOUT.lock_failures), ("relocation_failures", LAYOUT.relocation_failures)):
        if package.exists(relative):
            info[name] = open_parquet(package.fetch(relative), fix="re-run the step that wrote it").metadata.num_rows
    return info


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"


def _summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("package", info["package"])]
    items = info.get("items")
    if items:
        rows += [("items", str(items["items"])),
                 ("collections", ", ".join(f"{k} ({v})" for k, v in items["collections"].items()) or "-"),
                 ("assets listed", str(items["assets"])),
                 ("asset keys", ", ".join(f"{k} ({v})" for k, v in items["asset_keys"].items()) or "-")]
        if items.get("datetime"):
            rows.append(("datetime", f"{items['datetime']['min']} .. {items['datetime']['max']}"))
    for name, label in (("lock", "lock"), ("relocated_lock", "relocated lock")):
        lock = info.get(name)
        if lock:
            rows += [(label, f"{lock['rows']} asset(s), {_mib(lock['known_bytes'])} known "
                             f"({lock['rows_with_size']} with size, {lock['rows_with_checksum']} with sha256), "
                             f"{lock['format']}"),
                     (f"{label} stores", ", ".join(f"{k} ({v})" for k, v in lock["stores"].items()) or "-")]
    if "validation" in info:
        rows.append(("last validation", ", ".join(f"{k} {v}" for k, v in info["validation"]["counts"].items())))
    for name, label in (("lock_failures", "lock failures"), ("relocation_failures", "relocation failures")):
        if name in info:
            rows.append((label, str(info[name])))
    return rows


def render_text(info: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in _summary_rows(info):
        table.add_row(key, value)
    console.print(table)
    files = Table("file", "bytes", title="files", title_justify="left")
    for f in info["files"]:
        files.add_row(f["path"], str(f["bytes"]))
    console.print(files)


def render_markdown(info: dict[str, Any]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["# STAC package", "", "| | |", "|---|---|"]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in _summary_rows(info)]
    lines += ["", "## Files", "", "| file | bytes |", "|---|---:|"]
    lines += [f"| `{cell(f['path'])}` | {f['bytes']} |" for f in info["files"]]
    return "\n".join(lines) + "\n"
