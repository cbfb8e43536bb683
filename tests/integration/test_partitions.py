"""The chain partitioned by day against pgstac and S3: one package per day, each with that day's items.

The synthetic collection ``sentinel-2-l2a-synth`` has one item every 137 minutes from 2020-01-01, all
clones of one Planetary Computer item whose asset hrefs stay the published Azure URLs; a rewrite rule
maps them to stand-in objects in an S3 bucket (as in test_chain). Then the revalidation sensor reads
the partitioned packages on S3 and asks for exactly the partition whose relocated lock changed.
"""

from __future__ import annotations

import io
import json
import time

import dagster as dg
import pyarrow.parquet as pq
import pytest

from devservers.stacdata import SYNTH_COLLECTION
from pipelines.assets import build_chain
from pipelines.definitions import build_definitions
from pipelines.sensors import SENSOR_NAME
from pipelines.settings import Settings, build_resources
from tests.chain_support import cdn_rules, materialized, put_standins, s3_profiles

pytestmark = pytest.mark.integration

DAYS = ["2020-01-01", "2020-01-02"]
KEYS = ["B02", "B03"]


def _day(item: dict) -> str:
    return item["properties"]["datetime"][:10]


@pytest.fixture
def partition_env(s3_endpoint, s3_client, s3_bucket_factory, stac_api_url, stac_synthetic_items, tmp_path,
                  monkeypatch):
    source, package, mirror = s3_bucket_factory(), s3_bucket_factory(), s3_bucket_factory()
    rules = cdn_rules(source)
    expected = {day: sorted(i["id"] for i in stac_synthetic_items if _day(i) == day) for day in DAYS}
    # the clones share their hrefs: one stand-in per asset key
    put_standins(s3_client, (item["assets"][key]["href"] for item in stac_synthetic_items
                            if _day(item) in DAYS for key in KEYS), rules)
    monkeypatch.setenv("TEST_PART_KEY_ID", s3_endpoint.access_key_id)
    monkeypatch.setenv("TEST_PART_SECRET", s3_endpoint.secret_access_key)
    profiles = s3_profiles(s3_endpoint, {"source": source, "package": package, "mirror": mirror},
                           key_env="TEST_PART_KEY_ID", secret_env="TEST_PART_SECRET")
    settings = Settings.model_validate({
        "stac_api": {"url": stac_api_url},
        "search": {"collections": [SYNTH_COLLECTION], "limit": 7},
        "package": {"url": f"s3://{package}/packages/synth", "include_asset_keys": KEYS,
                    "workdir": str(tmp_path / "work")},
        "relocation": {"target": f"s3://{mirror}/assets", "memory_limit_mib": 64, "verify": "size"},
        "validation": {"deep": False, "max_age_hours": 24},
        "partitions": {"kind": "daily", "start": "2020-01-01"},
        "retries": {"max_retries": 1, "delay": 1},
        "storage": {"profiles": profiles},
        "rewrite": {"rules": [r.model_dump() for r in rules.rules]},
    })
    return {"settings": settings, "expected": expected, "package": package, "mirror": mirror}


def _get(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_daily_partitions_package_their_day(partition_env, s3_client):
    settings, expected = partition_env["settings"], partition_env["expected"]
    package, mirror = partition_env["package"], partition_env["mirror"]
    chain = build_chain(settings)
    instance = dg.DagsterInstance.ephemeral()
    assert all(len(ids) >= 10 for ids in expected.values())

    for day in DAYS:
        result = dg.materialize(chain, resources=build_resources(settings), instance=instance, partition_key=day)
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())
        rows = len(expected[day]) * len(KEYS)
        assert materialized(result, "search_results")["returned"] == len(expected[day])
        assert materialized(result, "assets_lock")["rows"] == rows
        assert materialized(result, "relocated_assets")["copied"] == rows
        assert materialized(result, "validation_report")["ok"] == rows

    for day in DAYS:
        root = f"packages/synth/partitions/{day}"
        request = json.loads(_get(s3_client, package, f"{root}/search/request.json"))
        assert request["datetime"] == f"{day}T00:00:00Z/{day}T23:59:59.999999Z"
        ids = [json.loads(line)["id"] for line in _get(s3_client, package, f"{root}/search/items.ndjson").splitlines()]
        assert sorted(ids) == expected[day]  # exactly the day's items, none of the neighbours'
        lock = pq.read_table(io.BytesIO(_get(s3_client, package, f"{root}/relocated/assets.lock.parquet")))
        keys = lock.column("key").to_pylist()
        assert len(keys) == len(expected[day]) * len(KEYS)
        assert all(k.startswith(f"assets/{day}/{SYNTH_COLLECTION}/") for k in keys)
    assert not s3_client.list_objects_v2(Bucket=package, Prefix="packages/synth/items.parquet").get("KeyCount")
    assert instance.get_materialized_partitions(dg.AssetKey("validation_report")) == set(DAYS)

    # The revalidation sensor lists the partitioned packages on S3: quiet, until one relocated lock
    # is written again after its validation (S3 times have 1 s resolution) and one copy changes.
    defs = build_definitions(settings=settings)
    sensor, resources = defs.resolve_sensor_def(SENSOR_NAME), build_resources(settings)

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources,
                                     definitions=defs) as context:
            return sensor.evaluate_tick(context)

    quiet = tick(None)
    assert not quiet.run_requests and sorted(json.loads(quiet.cursor)["packages"]) == DAYS
    lock_key = f"packages/synth/partitions/{DAYS[1]}/relocated/assets.lock.parquet"
    body = _get(s3_client, package, lock_key)
    victim = pq.read_table(io.BytesIO(body)).to_pylist()[3]
    time.sleep(1.1)
    s3_client.put_object(Bucket=package, Key=lock_key, Body=body)
    s3_client.put_object(Bucket=mirror, Key=victim["key"], Body=b"not the locked bytes")
    changed = tick(quiet.cursor)
    [request] = changed.run_requests
    assert (request.partition_key, request.tags["stac-packager/reason"]) == (DAYS[1], "lock-changed")
    assert request.tags["stac-packager/package"] == f"s3://{package}/packages/synth/partitions/{DAYS[1]}"

    # The requested run: the revalidate job for that partition finds exactly the changed copy.
    job = defs.resolve_job_def("revalidate")
    run = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags,
                                 raise_on_error=False)
    [check] = run.get_asset_check_evaluations()
    assert not check.passed and check.metadata["drifted"].value == 1
    report = pq.read_table(io.BytesIO(_get(s3_client, package, f"packages/synth/partitions/{DAYS[1]}/"
                                                                   "validation/report.parquet"))).to_pylist()
    assert [(r["item_id"], r["asset_key"]) for r in report if r["status"] != "ok"] == \
        [(victim["item_id"], victim["asset_key"])]
    # validated since the lock changed: quiet again (its report is newer than its lock)
    assert not tick(changed.cursor).run_requests
