"""Turning engine summaries into what the Dagster UI shows: numbers, tables and markdown."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from packager.lock import Failure

MAX_TABLE_ROWS = 25
MiB = 1 << 20


def failures_table(failures: Sequence[Failure]) -> dg.TableMetadataValue:
    """The first failures as a table: which asset, where, what went wrong."""
    schema = dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in
                                     ("asset", "href", "stage", "error_code", "error")])
    records = [dg.TableRecord({"asset": f"{f.collection or '-'}/{f.item_id}/{f.asset_key}", "href": f.href,
                               "stage": f.stage, "error_code": f.error_code, "error": f.error[:500]})
               for f in failures[:MAX_TABLE_ROWS]]
    return dg.MetadataValue.table(records, schema=schema)


def records_table(rows: Sequence[dict]) -> dg.TableMetadataValue:
    columns = list(rows[0]) if rows else ["asset", "status", "detail"]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns])
    return dg.MetadataValue.table([dg.TableRecord({k: str(v) for k, v in r.items()}) for r in rows[:MAX_TABLE_ROWS]],
                                  schema=schema)


def mib(n: int) -> float:
    return round(n / MiB, 3)


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds else 0.0
