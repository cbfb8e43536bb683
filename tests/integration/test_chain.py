"""The whole chain through Dagster with real resources: pgstac search, objects on S3, relocation, validation.

Real Planetary Computer Sentinel-2 items are searched from stac-fastapi-pgstac. Their assets keep their
published https hrefs; a rewrite rule maps that CDN prefix to an S3 bucket holding stand-in bytes, so the
lock reads S3 through the rule. The package itself lives on S3; relocation goes S3 -> S3, then S3 -> local.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from pipelines.assets import CHAIN, validation_report
from pipelines.settings import Settings, build_resources
from tests.chain_support import (
    CDN,
    EXCLUDED,
    bucket_bytes,
    cdn_rules,
    event_log_text,
    materialized,
    pc_items,
    s3_profiles,
    seed_items,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def chain_env(s3_endpoint, s3_client, s3_bucket_factory, stac_api_url, tmp_path, monkeypatch):
    """Buckets with stand-ins for 3 real S2 items' assets, and the settings of the whole chain."""
    source, package, mirror = s3_bucket_factory(), s3_bucket_factory(), s3_bucket_factory()
    items = pc_items(3)
    rules = cdn_rules(source)
    expected = seed_items(s3_client, items, rules)
    monkeypatch.setenv("TEST_CHAIN_KEY_ID", s3_endpoint.access_key_id)
    monkeypatch.setenv("TEST_CHAIN_SECRET", s3_endpoint.secret_access_key)
    profiles = s3_profiles(s3_endpoint, {"source": source, "package": package, "mirror": mirror},
                           key_env="TEST_CHAIN_KEY_ID", secret_env="TEST_CHAIN_SECRET")
    settings = Settings.model_validate({
        "stac_api": {"url": stac_api_url},
        "search": {"collections": ["sentinel-2-l2a"], "ids": [i["id"] for i in items], "limit": 2},
        "package": {"url": f"s3://{package}/packages/alps", "checksum": True, "exclude_asset_keys": EXCLUDED,
                    "workdir": str(tmp_path / "work")},
        "relocation": {"target": f"s3://{mirror}/assets", "memory_limit_mib": 64},
        "validation": {"deep": False},
        "storage": {"profiles": profiles},
        "rewrite": {"rules": [r.model_dump() for r in rules.rules]},
    })
    return {"settings": settings, "items": items, "expected": expected, "source": source, "package": package,
            "mirror": mirror}


def _read_parquet(s3_client, bucket: str, key: str):
    return pq.read_table(io.BytesIO(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_chain_s3_to_s3_then_local_with_deep_validation(chain_env, s3_client, tmp_path):
    settings, expected = chain_env["settings"], chain_env["expected"]
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(CHAIN, resources=build_resources(settings), instance=instance)
    assert result.success

    assert materialized(result, "search_results")["returned"] == 3
    assert materialized(result, "items_parquet")["items"] == 3
    lock_meta = materialized(result, "assets_lock")
    assert lock_meta["rows"] == len(expected)
    assert lock_meta["checksums"] == len(expected)
    relocated = materialized(result, "relocated_assets")
    assert (relocated["copied"], relocated["already_present"], relocated["failed"]) == (len(expected), 0, 0)
    # S3 computed the MD5 of what it received, equal to the MD5 of what was read: no read-back needed.
    assert relocated["verified"] == {"store-md5": len(expected)}
    assert materialized(result, "validation_report")["ok"] == len(expected)
    assert all(check.passed for check in result.get_asset_check_evaluations())

    # The lock on S3 is the package's: rows locate the source bucket through the rewrite rule, the href is
    # the published one, the checksum is the sha256 of the bytes.
    lock = _read_parquet(s3_client, chain_env["package"], "packages/alps/assets.lock.parquet").to_pylist()
    row = next(r for r in lock if r["asset_key"] == "B02")
    body = expected[(row["item_id"], "B02")]
    assert row["store_type"] == "s3" and row["store_container"] == chain_env["source"]
    assert row["href"].startswith(CDN) and row["size_bytes"] == len(body)
    assert row["checksum"] == "1220" + hashlib.sha256(body).hexdigest()

    # Every relocated object is byte-identical at the key the template gives.
    new_lock = _read_parquet(s3_client, chain_env["package"], "packages/alps/relocated/assets.lock.parquet")
    for rec in new_lock.to_pylist():
        assert rec["key"] == f"assets/sentinel-2-l2a/{rec['item_id']}/{rec['asset_key']}" + Path(rec["key"]).suffix
        copy = s3_client.get_object(Bucket=chain_env["mirror"], Key=rec["key"])["Body"].read()
        assert copy == expected[(rec["item_id"], rec["asset_key"])]

    # Items are enriched with the alternate href and file info of the copies.
    enriched = _read_parquet(s3_client, chain_env["package"], "packages/alps/relocated/items.parquet")
    assets = json.loads(json.dumps(enriched.column("assets").to_pylist()[0], default=str))
    b02 = assets["B02"]
    assert b02["alternate"]["mirror"]["href"].startswith(f"s3://{chain_env['mirror']}/assets/")
    assert b02["file:checksum"].startswith("1220") and b02["file:size"] > 0

    # A re-run resumes: nothing is copied again, and the first run's lock still validates.
    again = dg.materialize(CHAIN[3:], resources=build_resources(settings), instance=instance)
    assert materialized(again, "relocated_assets")["copied"] == 0
    assert materialized(again, "relocated_assets")["already_present"] == len(expected)
    assert materialized(again, "validation_report")["ok"] == len(expected)

    # Same-size rewrite of one relocated object: deep validation flags exactly that one.
    victim = new_lock.to_pylist()[5]
    original = expected[(victim["item_id"], victim["asset_key"])]
    s3_client.put_object(Bucket=chain_env["mirror"], Key=victim["key"], Body=bytes(reversed(original)))
    deep = dg.materialize([validation_report], resources=build_resources(settings), instance=instance,
                          run_config=dg.RunConfig(ops={"validation_report": {"config": {"deep": True}}}),
                          raise_on_error=False)
    check = deep.get_asset_check_evaluations()[0]
    assert check.check_name == "validation_clean" and not check.passed
    assert check.metadata["drifted"].value == 1
    report = _read_parquet(s3_client, chain_env["package"], "packages/alps/validation/report.parquet").to_pylist()
    bad = [r for r in report if r["status"] != "ok"]
    assert [(r["item_id"], r["asset_key"]) for r in bad] == [(victim["item_id"], victim["asset_key"])]
    assert "checksum" in bad[0]["mismatches"] and bad[0]["observed_size"] == len(original)


def test_chain_relocates_s3_to_local(chain_env, tmp_path):
    settings = chain_env["settings"].model_copy(deep=True)
    settings.relocation.target = str(tmp_path / "mirror")
    result = dg.materialize(CHAIN, resources=build_resources(settings), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    copies = {p.relative_to(tmp_path / "mirror").as_posix(): p.read_bytes()
              for p in (tmp_path / "mirror").rglob("*") if p.is_file()}
    assert len(copies) == len(chain_env["expected"])
    # a local file's ETag is not a content hash: every copy is read back and its sha256 compared
    assert materialized(result, "relocated_assets")["verified"] == {"read-back": len(chain_env["expected"])}
    for (item_id, key), body in chain_env["expected"].items():
        match = [v for k, v in copies.items() if k.startswith(f"sentinel-2-l2a/{item_id}/{key}")]
        assert match == [body]
    assert materialized(result, "validation_report")["ok"] == len(chain_env["expected"])


def test_no_secret_reaches_event_log_metadata_or_package(chain_env, s3_endpoint, s3_client, monkeypatch, capfd):
    """The S3 secret, and a wrong one that makes a run fail, appear nowhere a user or an attacker looks."""
    secret = s3_endpoint.secret_access_key
    instance = dg.DagsterInstance.ephemeral()
    ok = dg.materialize(CHAIN, resources=build_resources(chain_env["settings"]), instance=instance)
    assert ok.success

    wrong = "Wr0ng-S3cret-do-not-leak-7f3a"
    monkeypatch.setenv("TEST_CHAIN_SECRET", wrong)
    failed = dg.materialize(CHAIN[2:3], resources=build_resources(chain_env["settings"]), instance=instance,
                            raise_on_error=False)
    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.error
    assert "access denied" in failure.to_string().lower()

    captured = capfd.readouterr()
    package = bucket_bytes(s3_client, chain_env["package"])
    for label, text in (("event log of the successful run", event_log_text(instance, ok.run_id)),
                        ("event log of the failed run", event_log_text(instance, failed.run_id)),
                        ("step error", failure.to_string()), ("stdout/stderr", captured.out + captured.err)):
        assert secret not in text, label
        assert wrong not in text, label
    assert secret.encode() not in package and wrong.encode() not in package


def test_chain_relocates_s3_to_swift_and_package_on_webdav(chain_env, swift_server, swift_container,
                                                          webdav_server, monkeypatch):
    """Dagster resources configured only by settings and environment: S3 source, Swift target, WebDAV package."""
    monkeypatch.setenv("TEST_SWIFT_KEY", swift_server.key)
    monkeypatch.setenv("TEST_DAV_PASSWORD", webdav_server.password)
    dav_host = webdav_server.url.split("://", 1)[1]
    raw = chain_env["settings"].model_dump()
    raw["package"]["url"] = f"webdav://{dav_host}/packages/alps"
    raw["relocation"]["target"] = f"swift://{swift_container}/mirror"
    raw["storage"]["profiles"] += [
        {"name": "swift", "url": f"swift://{swift_container}", "auth_url": swift_server.auth_url,
         "user": swift_server.user, "key": {"env": "TEST_SWIFT_KEY"}},
        {"name": "dav", "url": f"webdav://{dav_host}", "username": webdav_server.user,
         "password": {"env": "TEST_DAV_PASSWORD"}},
    ]
    settings = Settings.model_validate(raw)
    result = dg.materialize(CHAIN, resources=build_resources(settings), instance=dg.DagsterInstance.ephemeral(),
                            run_config=dg.RunConfig(ops={"validation_report": {"config": {"deep": True}}}))
    assert result.success
    expected = chain_env["expected"]
    assert materialized(result, "relocated_assets")["copied"] == len(expected)
    assert materialized(result, "validation_report")["ok"] == len(expected)

    from swiftclient import client as sc

    _, listing = sc.get_container(swift_server.storage_url, swift_server.token, swift_container, full_listing=True)
    assert len(listing) == len(expected)
    for entry in listing[:5]:  # mirror/<collection>/<item id>/<asset key><ext>
        _, _, item_id, filename = entry["name"].split("/")
        _, body = sc.get_object(swift_server.storage_url, swift_server.token, swift_container, entry["name"])
        assert body == expected[(item_id, filename.split(".")[0])]
    lock = pq.read_table(webdav_server.root / "packages" / "alps" / "relocated" / "assets.lock.parquet").to_pylist()
    assert {r["store_type"] for r in lock} == {"swift"} and len(lock) == len(expected)
