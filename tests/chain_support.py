"""What the integration tests of the Dagster chain share: real items, stand-in bytes on S3, S3 profiles.

Real Planetary Computer Sentinel-2 items keep their published https hrefs; a rewrite rule maps that CDN
prefix to an S3 bucket, and :func:`put_standins` puts deterministic stand-in bytes (the demo's generator,
:func:`demo.standins.standin_bytes`) where the rule points, so the lock reads S3 through the rule.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from demo.standins import standin_bytes
from devservers.seaweedfs import S3Server
from devservers.stacdata import ITEMS_FILE, read_ndjson
from packager.locations import parse_href
from packager.rewrite import RewriteRule, RewriteRules

CDN = "https://sentinel2l2a01.blob.core.windows.net/"
#: Planetary Computer data-API assets (previews, tile JSON), not files
EXCLUDED = ["rendered_preview", "tilejson"]


def pc_items(n: int) -> list[dict]:
    """The first ``n`` real Sentinel-2 items whose file assets all live under :data:`CDN`."""
    items = [i for i in read_ndjson(ITEMS_FILE) if i.get("collection") == "sentinel-2-l2a"
             and all(a["href"].startswith(CDN) for k, a in i["assets"].items() if k not in EXCLUDED)]
    return items[:n]


def cdn_rules(source_bucket: str) -> RewriteRules:
    return RewriteRules(rules=[RewriteRule(prefix=CDN, replacement=f"s3://{source_bucket}/sentinel2l2a01/")])


def put_standins(s3_client, hrefs: Iterable[str], rules: RewriteRules) -> dict[str, bytes]:
    """Stand-in bytes for each href, put where the rewrite rules send it; href -> bytes (once per href)."""
    bodies: dict[str, bytes] = {}
    for href in hrefs:
        if href not in bodies:
            bodies[href] = standin_bytes(href)
            location = parse_href(rules.rewrite(href))
            s3_client.put_object(Bucket=location.container, Key=location.key, Body=bodies[href])
    return bodies


def seed_items(s3_client, items: list[dict], rules: RewriteRules) -> dict[tuple[str, str], bytes]:
    """Stand-ins for every file asset of ``items``; (item id, asset key) -> bytes."""
    assets = [(item["id"], key, asset["href"]) for item in items for key, asset in item["assets"].items()
              if key not in EXCLUDED]
    bodies = put_standins(s3_client, (href for _, _, href in assets), rules)
    return {(item_id, key): bodies[href] for item_id, key, href in assets}


def s3_profiles(s3: S3Server, buckets: dict[str, str], *, key_env: str, secret_env: str) -> list[dict]:
    """Settings profiles (name -> bucket) whose credentials are only ``{env: NAME}`` references."""
    return [{"name": name, "url": f"s3://{bucket}", "endpoint": s3.endpoint, "region": s3.region,
             "access_key_id": {"env": key_env}, "secret_access_key": {"env": secret_env}}
            for name, bucket in buckets.items()]


def materialized(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata of ``asset``'s materialization in ``result``, as plain values."""
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(repr(record) for record in instance.all_logs(run_id))


def bucket_bytes(s3_client, bucket: str) -> bytes:
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return b"".join(s3_client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)
