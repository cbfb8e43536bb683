"""The chain partitioned by day, by area × day, by dynamic area and by collection, against pgstac and S3.

The synthetic collection ``sentinel-2-l2a-synth`` has one item every 137 minutes from 2020-01-01, all
clones of one Planetary Computer item moved along a diagonal across the globe, whose asset hrefs stay the
published Azure URLs; a rewrite rule maps them to stand-in objects in an S3 bucket (as in test_chain).
Each partition's package must hold exactly the items of its day and area, and the revalidation sensor
reads the partitioned packages on S3 and asks for exactly the partition whose relocated lock changed.
The items' materialization carries the footprint map the UI shows.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import time

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from devservers.stacdata import SYNTH_COLLECTION
from pipelines.assets import build_chain
from pipelines.definitions import build_definitions
from pipelines.partitions import DYNAMIC_NAMES
from pipelines.sensors import SENSOR_NAME, SYNC_SENSOR_NAME
from pipelines.settings import Settings, build_resources
from tests.chain_support import cdn_rules, materialized, put_standins, s3_profiles

# Dagster 1.13 warns about its own per-dimension tags of multi-partition runs (dagster/partition/<dimension>)
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Non-compliant tag keys like \\['dagster/partition/:DeprecationWarning")]

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


# -- areas and collections -------------------------------------------------------------------------

def _in_area(item: dict, bbox: list[float]) -> bool:
    from devservers.stacdata import bbox_intersects

    return bbox_intersects(item["bbox"], bbox)


def _png_of(markdown: str) -> bytes:
    match = re.match(r"!\[Footprints of (\d+) items\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:200]
    png = base64.b64decode(match.group(2))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return png


def test_area_by_day_multi_partitions(partition_env, s3_client, stac_synthetic_items):
    """Two areas × two days: four packages under partitions/<area>/<day>, each with exactly its items."""
    settings = partition_env["settings"].model_copy(deep=True)
    areas = {"west": [-180.0, -90.0, -85.0, 90.0], "middle": [-120.0, -90.0, 0.0, 90.0]}
    settings.partitions.areas = areas
    package = partition_env["package"]
    chain = build_chain(settings)
    partitions_def = chain[0].partitions_def
    assert isinstance(partitions_def, dg.MultiPartitionsDefinition)
    assert {d.name for d in partitions_def.partitions_defs} == {"date", "area"}
    expected = {(area, day): sorted(i["id"] for i in stac_synthetic_items if _day(i) == day and _in_area(i, bbox))
                for area, bbox in areas.items() for day in DAYS}
    assert all(len(ids) >= 2 for ids in expected.values())  # every partition has items, not the same ones
    assert expected[("west", DAYS[0])] != expected[("middle", DAYS[0])]

    instance = dg.DagsterInstance.ephemeral()
    resources = build_resources(settings)
    for area, day in expected:
        key = dg.MultiPartitionKey({"area": area, "date": day})
        assert str(key) == f"{area}|{day}"
        result = dg.materialize(chain, resources=resources, instance=instance, partition_key=key)
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())
        items = materialized(result, "items_parquet")
        assert items["items"] == len(expected[(area, day)])
        # the footprint map of the partition's items, inline in the metadata the UI shows
        png = _png_of(items["footprints"])
        assert struct.unpack(">II", png[16:24])[0] == 480
        assert f"searched area '{area}'" in items["footprints"]
        west, south, east, north = items["extent"]
        assert areas[area][0] - 1 <= west <= east <= areas[area][2] + 1
        assert materialized(result, "validation_report")["ok"] == len(expected[(area, day)]) * len(KEYS)

    for (area, day), ids in expected.items():
        root = f"packages/synth/partitions/{area}/{day}"
        request = json.loads(_get(s3_client, package, f"{root}/search/request.json"))
        assert request["bbox"] == areas[area]
        assert request["datetime"] == f"{day}T00:00:00Z/{day}T23:59:59.999999Z"
        found = [json.loads(line)["id"] for line in _get(s3_client, package, f"{root}/search/items.ndjson").splitlines()]
        assert sorted(found) == ids
        lock = pq.read_table(io.BytesIO(_get(s3_client, package, f"{root}/relocated/assets.lock.parquet")))
        assert all(k.startswith(f"assets/{area}/{day}/") for k in lock.column("key").to_pylist())
    assert instance.get_materialized_partitions(dg.AssetKey("validation_report")) == \
        {f"{area}|{day}" for area, day in expected}

    # the revalidation sensor finds the four packages two levels down and names the multi-partition
    defs = build_definitions(settings=settings)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources,
                                     definitions=defs) as context:
            return sensor.evaluate_tick(context)

    quiet = tick(None)
    assert not quiet.run_requests
    assert sorted(json.loads(quiet.cursor)["packages"]) == sorted(f"{a}/{d}" for a, d in expected)
    lock_key = f"packages/synth/partitions/middle/{DAYS[1]}/relocated/assets.lock.parquet"
    time.sleep(1.1)  # written again after its validation (S3 times have 1 s resolution)
    s3_client.put_object(Bucket=package, Key=lock_key, Body=_get(s3_client, package, lock_key))
    [request] = tick(quiet.cursor).run_requests
    assert request.partition_key == f"middle|{DAYS[1]}"
    assert request.tags["stac-packager/package"] == f"s3://{package}/packages/synth/partitions/middle/{DAYS[1]}"


def test_dynamic_areas_from_a_file_on_s3(partition_env, s3_client, stac_synthetic_items):
    """Areas listed in a YAML file on S3: sync_partitions adds them (and requests their packages), then
    removes the one taken out of the file; a package is searched with its area's bbox."""
    settings = partition_env["settings"].model_copy(deep=True)
    package = partition_env["package"]
    source = f"s3://{package}/config/areas.yaml"
    settings.partitions.kind = "none"
    settings.partitions.areas = source
    settings.search["datetime"] = f"{DAYS[0]}T00:00:00Z/{DAYS[1]}T23:59:59Z"
    areas = {"far-west": [-180.0, -90.0, -150.0, 90.0], "tropics": [-100.0, -23.5, -20.0, 23.5]}
    s3_client.put_object(Bucket=package, Key="config/areas.yaml", Body=yaml.safe_dump(areas).encode())

    defs = build_definitions(settings=settings)
    resources = build_resources(settings)
    assert isinstance(defs.resolve_job_def("package_stac").partitions_def, dg.DynamicPartitionsDefinition)
    assert not defs.schedules  # nothing time-based to schedule
    sync = defs.resolve_sensor_def(SYNC_SENSOR_NAME)

    with dg.instance_for_test() as instance:
        def tick():
            with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), resources=resources,
                                         definitions=defs) as context:  # as the daemon: new keys are valid
                result = sync.evaluate_tick(context)
            for request in result.dynamic_partitions_requests or []:  # what the daemon does with them
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
                else:
                    for key in request.partition_keys:
                        instance.delete_dynamic_partition(request.partitions_def_name, key)
            return result

        added = tick()
        assert sorted(instance.get_dynamic_partitions(DYNAMIC_NAMES["area"])) == sorted(areas)
        assert sorted(r.partition_key for r in added.run_requests) == sorted(areas)
        assert {r.tags["stac-packager/package"] for r in added.run_requests} == \
            {f"s3://{package}/packages/synth/partitions/{a}" for a in areas}
        assert not tick().run_requests  # in step with the file: nothing to do

        # the requested run of one area: its package, searched with its bbox
        result = dg.materialize(build_chain(settings), resources=resources, instance=instance,
                                partition_key="tropics")
        assert result.success
        expected = sorted(i["id"] for i in stac_synthetic_items if _day(i) in DAYS and _in_area(i, areas["tropics"]))
        root = "packages/synth/partitions/tropics"
        request = json.loads(_get(s3_client, package, f"{root}/search/request.json"))
        assert request["bbox"] == areas["tropics"]
        assert sorted(json.loads(line)["id"] for line in
                      _get(s3_client, package, f"{root}/search/items.ndjson").splitlines()) == expected
        assert materialized(result, "validation_report")["ok"] == len(expected) * len(KEYS)
        _png_of(materialized(result, "items_parquet")["footprints"])

        # an area taken out of the file stops being a partition; its package stays
        s3_client.put_object(Bucket=package, Key="config/areas.yaml",
                             Body=yaml.safe_dump({"far-west": areas["far-west"]}).encode())
        removed = tick()
        assert not removed.run_requests
        assert instance.get_dynamic_partitions(DYNAMIC_NAMES["area"]) == ["far-west"]
        assert _get(s3_client, package, f"{root}/relocated/assets.lock.parquet")


def test_collection_partitions_search_their_collection(partition_env, s3_client):
    settings = partition_env["settings"].model_copy(deep=True)
    settings.partitions.kind = "none"
    settings.partitions.collections = [SYNTH_COLLECTION, "sentinel-2-l2a"]
    settings.search.update({"datetime": f"{DAYS[0]}T00:00:00Z/{DAYS[0]}T03:00:00Z", "collections": ["ignored"]})
    search = build_chain(settings)[0]
    assert search.partitions_def.get_partition_keys() == [SYNTH_COLLECTION, "sentinel-2-l2a"]
    result = dg.materialize([search], resources=build_resources(settings), partition_key=SYNTH_COLLECTION,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success and materialized(result, "search_results")["returned"] == 2  # 00:00 and 02:17
    request = json.loads(_get(s3_client, partition_env["package"],
                              f"packages/synth/partitions/{SYNTH_COLLECTION}/search/request.json"))
    assert request["collections"] == [SYNTH_COLLECTION]
