"""The ``stac-packager`` command line, driven as a user drives it: one subprocess per command.

Real stand-in bytes on disk (demo items, rewrite rules in a settings file), a real S3 server (SeaweedFS
or ``TEST_S3_*``) with credentials only as ``{env: NAME}`` references, a real OCI registry (Debian's
``docker-registry`` on 127.0.0.1) and a real STAC API (rustac) for search and ``materialize``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from demo.standins import DEMO_EXCLUDED_ASSET_KEYS, ITEMS_FILE, rewrite_rules_for, write_standins
from devservers.registry import oci_registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
N_ITEMS = 3
TIMINGS: dict[str, float] = {}


def cli(*args: str, env: dict | None = None, expect: int | None = 0, cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m packager.cli ARGS``; assert the exit code (when ``expect`` is not None)."""
    full_env = {k: v for k, v in os.environ.items() if k != "STAC_PACKAGER_CONFIG"}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, input=stdin, timeout=300)
    TIMINGS[args[0]] = TIMINGS.get(args[0], 0.0) + time.perf_counter() - started
    if expect is not None:
        assert proc.returncode == expect, (
            f"stac-packager {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}")
    return proc


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with oci_registry(tmp_path_factory.mktemp("oci-registry")) as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path) -> dict:
    """A few real items, stand-in bytes for their assets, and a settings file whose rules read them."""
    items = tmp_path / "items.ndjson"
    lines = [line for line in ITEMS_FILE.read_text().splitlines() if line.strip()][:N_ITEMS]
    items.write_text("\n".join(lines) + "\n")
    summary = write_standins(items, tmp_path / "source")
    settings = {
        "package": {"checksum": True, "exclude_asset_keys": sorted(DEMO_EXCLUDED_ASSET_KEYS)},
        "relocation": {"memory_limit_mib": 64},
        "rewrite": {"rules": rewrite_rules_for(summary.hosts, tmp_path / "source")},
    }
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(settings))
    return {"dir": tmp_path, "items": items, "config": config, "settings": settings,
            "assets": summary.files}


def test_cli_build_inspect_validate_relocate_push_pull(workspace, s3_endpoint, s3_bucket, registry):
    tmp, config = workspace["dir"], str(workspace["config"])
    pkg, n_assets = tmp / "pkg", workspace["assets"]

    # build: items.parquet + assets.lock.parquet with sha256, demo API endpoints left out
    out = json.loads(cli("build", str(workspace["items"]), str(pkg), "--config", config, "--json").stdout)
    assert out["items"] == N_ITEMS and out["locked"] == n_assets and out["failed"] == 0
    assert out["checksums"] == n_assets
    assert (pkg / "items.parquet").is_file() and (pkg / "assets.lock.parquet").is_file()

    # inspect, three formats (the settings come from the environment this time)
    env = {"STAC_PACKAGER_CONFIG": config}
    text = cli("inspect", str(pkg), env=env).stdout
    assert "items" in text and str(N_ITEMS) in text and "landsat-c2-l2" in text
    info = json.loads(cli("inspect", str(pkg), "--format", "json", env=env).stdout)
    assert info["items"]["items"] == N_ITEMS
    assert info["lock"]["rows"] == n_assets and info["lock"]["rows_with_checksum"] == n_assets
    assert info["lock"]["known_bytes"] == sum(p.stat().st_size for p in (tmp / "source").rglob("*") if p.is_file())
    assert "rendered_preview" in info["items"]["asset_keys"]  # listed by the items, not locked
    markdown = cli("inspect", str(pkg), "--format", "markdown", env=env).stdout
    assert markdown.startswith("# STAC package") and "| items | 3 |" in markdown and "`assets.lock.parquet`" in markdown

    # validate the source lock: one JSON line per asset, exit 0
    rows = json_lines(cli("validate", str(pkg), "--config", config, "--deep").stdout)
    assert len(rows) == n_assets and {r["status"] for r in rows} == {"ok"}
    assert (pkg / "validation" / "report.parquet").is_file()

    # relocate --dry-run: the planned keys, nothing copied; a colliding template is refused
    mirror = tmp / "mirror"
    plan = cli("relocate", str(pkg), "--target", str(mirror), "--dry-run", "--config", config).stdout.splitlines()
    assert len(plan) == n_assets and all(" -> file://" + str(mirror) in line for line in plan)
    assert not mirror.exists()
    refused = cli("relocate", str(pkg), "--target", str(mirror), "--dry-run", "--key-template",
                  "{collection}/{asset_key}{ext}", "--config", config, expect=2)
    assert "collision" in refused.stderr and not mirror.exists()

    # relocate to S3, credentials only as {env: NAME} references in the settings file
    s3_settings = dict(workspace["settings"])
    s3_settings["storage"] = {"profiles": [{
        "name": "mirror", "url": f"s3://{s3_bucket}", "endpoint": s3_endpoint.endpoint, "region": s3_endpoint.region,
        "access_key_id": {"env": "CLI_TEST_S3_KEY_ID"}, "secret_access_key": {"env": "CLI_TEST_S3_SECRET"}}]}
    s3_config = tmp / "settings-s3.yaml"
    s3_config.write_text(yaml.safe_dump(s3_settings))
    assert s3_endpoint.secret_access_key not in s3_config.read_text()
    creds = {"CLI_TEST_S3_KEY_ID": s3_endpoint.access_key_id, "CLI_TEST_S3_SECRET": s3_endpoint.secret_access_key}
    missing = cli("relocate", str(pkg), "--target", f"s3://{s3_bucket}/assets", "--config", str(s3_config), expect=2)
    assert "CLI_TEST_S3_KEY_ID" in missing.stderr or "CLI_TEST_S3_SECRET" in missing.stderr
    moved = cli("relocate", str(pkg), "--target", f"s3://{s3_bucket}/assets", "--config", str(s3_config),
                "--memory-limit", "64MiB", "--json", env=creds)
    assert json.loads(moved.stdout)["copied"] == n_assets
    assert s3_endpoint.secret_access_key not in moved.stdout + moved.stderr
    rows = json_lines(cli("validate", str(pkg), "--config", str(s3_config), env=creds).stdout)
    assert len(rows) == n_assets and all(r["href"].startswith(f"s3://{s3_bucket}/assets/") for r in rows)
    assert {r["status"] for r in rows} == {"ok"}

    # relocate to a local folder, validate the relocated lock
    result = json.loads(cli("relocate", str(pkg), "--target", str(mirror), "--verify", "checksum", "--json",
                            "--config", config).stdout)
    assert result["copied"] == n_assets and result["failed"] == 0
    rows = json_lines(cli("validate", str(pkg), "--config", config).stdout)
    assert {r["status"] for r in rows} == {"ok"} and all(r["href"].startswith(f"file://{mirror}/") for r in rows)
    assert (pkg / "relocated" / "items.parquet").is_file()

    # push to the registry, pull into a new folder: same bytes, every file, and the pulled package validates
    ref = f"{registry.host}/packages/cli-test:v1"
    pushed = cli("push", str(pkg), ref).stdout.strip()
    assert pushed.startswith(f"{registry.host}/packages/cli-test@sha256:")
    pulled = tmp / "pulled"
    report = json.loads(cli("pull", pushed, "-o", str(pulled), "--json").stdout)
    assert report["artifact_type"] == "application/vnd.stac-packager.package.v1+json"
    originals = {p.relative_to(pkg).as_posix() for p in pkg.rglob("*") if p.is_file()}
    assert {f["path"] for f in report["files"]} == originals
    for relative in originals:
        assert (pulled / relative).read_bytes() == (pkg / relative).read_bytes(), relative
    rows = json_lines(cli("validate", str(pulled), "--config", config, "--deep").stdout)
    assert len(rows) == n_assets and {r["status"] for r in rows} == {"ok"}

    # one relocated object modified -> validate exits 1 and names exactly that asset
    victim = next(r for r in rows if r["asset_key"] == "blue")
    victim_path = Path(victim["href"][len("file://"):])
    victim_path.write_bytes(victim_path.read_bytes() + b"drift")
    drift = cli("validate", str(pkg), "--config", config, expect=1)
    bad = [r for r in json_lines(drift.stdout) if r["status"] != "ok"]
    assert [r["asset"] for r in bad] == [victim["asset"]] and bad[0]["status"] == "changed"
    assert victim["asset"] in drift.stderr and "1 of" in drift.stderr

    # a tampered blob in the registry's storage: pull fails naming the digest, and writes nothing
    lock_digest = "sha256:" + hashlib.sha256((pkg / "assets.lock.parquet").read_bytes()).hexdigest()
    blob = registry.blob_path(lock_digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    tampered = cli("pull", ref, "-o", str(tmp / "pulled-tampered"), expect=1)
    assert lock_digest in tampered.stderr and "assets.lock.parquet" in tampered.stderr
    assert not (tmp / "pulled-tampered").exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".pulled-tampered")]


def test_cli_bad_input_exits_2_naming_it(workspace):
    tmp, config = workspace["dir"], str(workspace["config"])
    missing = cli("build", str(tmp / "nope.ndjson"), str(tmp / "pkg"), "--config", config, expect=2)
    assert str(tmp / "nope.ndjson") in missing.stderr

    lines = workspace["items"].read_text().splitlines()
    broken = tmp / "broken.ndjson"
    broken.write_text("\n".join([lines[0], lines[1][: len(lines[1]) // 2], lines[2]]) + "\n")
    malformed = cli("build", str(broken), str(tmp / "pkg"), "--config", config, expect=2)
    assert str(broken) in malformed.stderr and "line 2" in malformed.stderr
    assert not (tmp / "pkg" / "items.parquet").exists()

    unknown = cli("validate", str(tmp / "pkg"), "--frobnicate", expect=2)
    assert "--frobnicate" in unknown.stderr and "stac-packager validate" in unknown.stderr
    assert "invalid choice" in cli("frobnicate", expect=2).stderr

    no_config = cli("inspect", str(tmp / "pkg"), "--config", str(tmp / "missing.yaml"), expect=2)
    assert "missing.yaml" in no_config.stderr
    not_a_package = cli("validate", str(tmp), "--config", config, expect=2)
    assert "assets.lock.parquet" in not_a_package.stderr

    # a FeatureCollection document and stdin NDJSON are inputs too
    collection = tmp / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": [json.loads(x) for x in lines]}))
    out = json.loads(cli("build", str(collection), str(tmp / "pkg-fc"), "--config", config, "--json").stdout)
    assert out["items"] == N_ITEMS and out["failed"] == 0
    out = json.loads(cli("build", "-", str(tmp / "pkg-stdin"), "--config", config, "--json",
                         "--exclude-asset-keys", "rendered_preview,tilejson,qa", stdin="\n".join(lines)).stdout)
    assert out["locked"] == workspace["assets"] - N_ITEMS  # one qa per item left out
    # and a package folder (its items.parquet) as input
    out = json.loads(cli("build", str(tmp / "pkg-fc"), str(tmp / "pkg-again"), "--config", config, "--json").stdout)
    assert out["items"] == N_ITEMS and out["locked"] == workspace["assets"]


def test_cli_help_documents_exit_codes():
    text = cli("--help").stdout
    for code in ("0  ok", "1  drift", "2  usage", "3  I/O"):
        assert code in text
    assert "exit codes" in cli("relocate", "--help").stdout
    keys = cli("keys", "--help", expect=None)
    assert keys.returncode == 0 and "keystore" in keys.stdout.lower()


def test_cli_search_and_materialize(workspace):
    from devservers.rustac import rustac_api

    tmp = workspace["dir"]
    collections = sorted((REPO / "demo" / "data" / "collections").glob("*.json"))
    with rustac_api([*collections, workspace["items"]], workdir=tmp / "rustac") as api:
        found = cli("search", "--url", api, "--collections", "landsat-c2-l2", "--max-items", "2", "--limit", "1",
                    "-o", str(tmp / "found.ndjson"), "--json")
        assert json.loads(found.stdout)["returned"] == 2
        assert len((tmp / "found.ndjson").read_text().splitlines()) == 2
        cli("search", "--url", api, "--ids", "nope", "--bbox", "1,2,3", expect=2)

        # the Dagster chain in-process on a settings file, then the CLI validates what it made
        settings = dict(workspace["settings"])
        settings.update(stac_api={"url": api}, search={"collections": ["landsat-c2-l2"], "limit": 10},
                        package={**settings["package"], "url": str(tmp / "chain-pkg")},
                        relocation={**settings["relocation"], "target": str(tmp / "chain-mirror")})
        config = tmp / "chain.yaml"
        config.write_text(yaml.safe_dump(settings))
        outcome = json.loads(cli("materialize", "--config", str(config), "--json").stdout)
        assert outcome["success"] and all(outcome["checks"].values())
        rows = json_lines(cli("validate", "--config", str(config)).stdout)  # package.url from the settings
        assert len(rows) == workspace["assets"] and {r["status"] for r in rows} == {"ok"}
        bad = cli("materialize", "--config", str(config), "--select", "nope", expect=2)
        assert "nope" in bad.stderr


def test_timings_report():
    """Not a check: prints the accumulated wall time per subcommand (pytest -s)."""
    print("\nCLI wall time per subcommand (s):", json.dumps({k: round(v, 2) for k, v in TIMINGS.items()}))
