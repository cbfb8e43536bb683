"""Hostile input through the command line (a subprocess, as a user runs it) and real servers (issue 9).

Each case asserts the exit code, that the message names the input (file and line, item id and asset key,
the href without its secret) and how to mend it, or the documented skip and its count; and that nothing
was written outside the target: the workspace tree, the source bucket and the target bucket are
snapshotted around each command, the CLI's scratch folder (``TMPDIR``) is empty afterwards, and a failed
command leaves no parquet file at its output path. Servers: SeaweedFS (``s3_endpoint``), Swift, WebDAV
and stac-fastapi-pgstac (``stac_api_url``), one of each per session. The pure parsing cases are in
``tests/unit/test_hostile_input.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
import yaml

from devservers.process import serve_http
from packager.items import iter_items, ndjson_to_geoparquet
from packager.lock import build_lock, iter_lock
from packager.profiles import StorageProfile
from packager.relocate import RelocationSettings, relocate
from packager.search import SearchRequest, search_to_ndjson
from packager.stores import StoreRegistry
from packager.validate import validate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "c2VjcmV0LXNpZ25hdHVyZQ"
LEASE = ".stac-packager.lease"  # the one file a command may leave in its package or target (packager.lease)
MiB = 1 << 20
SETTINGS = RelocationSettings(concurrency=4, memory_limit=64 * MiB, chunk_size=5 * MiB, put_concurrency=2)
NFC, NFD = unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")


# -- helpers -------------------------------------------------------------------------------------------
def cli(*args: str, tmpdir: Path, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m packager.cli ARGS`` with its scratch space in ``tmpdir``."""
    full_env = {k: v for k, v in os.environ.items() if k != "STAC_PACKAGER_CONFIG"}
    full_env.update({"PYTHONPATH": str(REPO) + os.pathsep + full_env.get("PYTHONPATH", ""), "TMPDIR": str(tmpdir),
                     **(env or {})})
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True,
                          env=full_env, input=stdin, timeout=300)


def cli_many(calls: dict[str, dict]) -> dict[str, subprocess.CompletedProcess]:
    """Several independent commands at once (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(cli, *c["args"], **{k: v for k, v in c.items() if k != "args"})
                   for name, c in calls.items()}
        return {name: f.result() for name, f in futures.items()}


def show(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"


def tree(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, int]:
    """Every file under ``root`` (not under ``skip``) with its size."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and not any(p.is_relative_to(s) for s in skip) and p.name != LEASE}


def listing(s3_client, bucket: str) -> dict[str, int]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])
            if not o["Key"].endswith(LEASE)}


def parquet_text(path: Path) -> str:
    table = pq.read_table(path)
    return json.dumps(table.to_pylist(), default=str) + str(table.schema.metadata)


def package_text(pkg: Path) -> str:
    """Every byte of a package folder, parquet files decoded: to look for a secret anywhere in it."""
    parts = []
    for p in sorted(pkg.rglob("*")):
        if p.is_file():
            parts.append(p.read_bytes().decode("latin-1"))
            if p.suffix == ".parquet":
                parts.append(parquet_text(p))
    return "\n".join(parts)


def item(item_id: Any, assets: dict | None = None, links: list | None = None, collection: str = "c",
         **extra: Any) -> dict:
    out = {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
           "geometry": {"type": "Point", "coordinates": [7.0, 46.0]}, "bbox": [7.0, 46.0, 7.0, 46.0],
           "properties": {"datetime": "2024-06-01T10:00:00Z"}, "links": links or [], "assets": assets or {}}
    out.update(extra)
    return out


def write_ndjson(path: Path, items: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items))
    return path


@pytest.fixture
def ws(tmp_path: Path) -> dict[str, Path]:
    """A workspace: ``tmp`` is the CLI's TMPDIR (must be empty after every command)."""
    (tmp_path / "tmp").mkdir()
    return {"dir": tmp_path, "tmp": tmp_path / "tmp"}


def s3_settings(ws: dict, s3_endpoint, *buckets: str) -> tuple[str, dict[str, str]]:
    """A settings file whose S3 profiles take their credentials from the environment only."""
    profiles = [{"name": f"b{i}", "url": f"s3://{b}", "endpoint": s3_endpoint.endpoint, "region": s3_endpoint.region,
                 "access_key_id": {"env": "HOSTILE_S3_KEY_ID"}, "secret_access_key": {"env": "HOSTILE_S3_SECRET"}}
                for i, b in enumerate(buckets)]
    config = ws["dir"] / "settings.yaml"
    config.write_text(yaml.safe_dump({"storage": {"profiles": profiles}, "relocation": {"memory_limit_mib": 64}}))
    return str(config), {"HOSTILE_S3_KEY_ID": s3_endpoint.access_key_id,
                         "HOSTILE_S3_SECRET": s3_endpoint.secret_access_key}


# -- malformed items: exit 2 naming the file and line, nothing written -------------------------------
def test_cli_refuses_malformed_items_naming_input_and_line(ws, tmp_path):
    d = tmp_path
    good = item("good", {"data": {"href": "s3://bucket/a.tif"}})
    write_ndjson(d / "broken.ndjson", [good, '{"type": "Feature", "id": "x", broken'])
    (d / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": [
        good, {"type": "Feature", "id": "nogeom", "properties": {}}]}, indent=2))
    (d / "bad.json").write_text('{"type": "FeatureCollection", "features": [')
    write_ndjson(d / "dup.ndjson", [good, item("other"), dict(good, properties={"datetime": "2025-01-01T00:00:00Z"})])
    ndjson_to_geoparquet(write_ndjson(d / "ok.ndjson", [good, item("other")]), d / "items.parquet")
    data = (d / "items.parquet").read_bytes()
    (d / "truncated.parquet").write_bytes(data[: len(data) // 2])
    build_lock([good], StoreRegistry(), d / "a-lock.parquet")  # a parquet file that is not items
    stdin = "\n".join([json.dumps(good), json.dumps(item("other")), "[1, 2, 3]"])

    cases = {  # input -> what stderr must say (the input as the user named it, the place, the fix)
        "broken.ndjson": [f"{d}/broken.ndjson: line 2 is not valid JSON", "fix or delete that line"],
        "items.json": [f"{d}/items.json: feature 2: item 'nogeom' has no geometry"],
        "-": ["stdin: line 3 is not a STAC item", "fix or delete that line"],
        "bad.json": [f"input {d}/bad.json is not valid JSON", "give it an .ndjson name"],
        "dup.ndjson": [f"{d}/dup.ndjson: line 3: item 'good' of collection 'c' is also on line 1, with different "
                       "content", "delete the stale one or give it another id"],
        "truncated.parquet": [f"{d}/truncated.parquet is not a complete parquet file", "re-create it"],
        "a-lock.parquet": [f"{d}/a-lock.parquet is not STAC GeoParquet: it has no id, geometry column(s)"],
    }
    before = tree(d, skip=(ws["tmp"],))
    results = cli_many({name: {"args": ["build", name if name == "-" else str(d / name), str(d / f"pkg-{name}")],
                               "tmpdir": ws["tmp"], "stdin": stdin if name == "-" else ""} for name in cases})
    for name, fragments in cases.items():
        proc = results[name]
        assert proc.returncode == 2, f"{name}: {show(proc)}"
        assert proc.stderr.startswith("stac-packager build: error: ") or "\nstac-packager build: error: " in \
            proc.stderr, f"{name}: {show(proc)}"
        for fragment in fragments:
            assert fragment in proc.stderr, f"{name}: {fragment!r} not in\n{show(proc)}"
        assert "Traceback" not in proc.stderr and proc.stdout == "", f"{name}: {show(proc)}"
        assert "stac-packager-cli-" not in proc.stderr  # never the scratch file's name
        assert not (d / f"pkg-{name}").exists(), f"{name}: the package was touched"
    assert tree(d, skip=(ws["tmp"],)) == before  # nothing written anywhere, no temp file left
    assert list(ws["tmp"].iterdir()) == []  # the CLI's scratch folders are gone


# -- hrefs and objects on S3: failure rows, documented skips, zero-byte objects, no secret ---------------
def test_cli_build_on_s3_names_every_bad_asset_and_keeps_no_secret(ws, s3_endpoint, s3_client, s3_bucket_factory):
    src, dst = s3_bucket_factory(), s3_bucket_factory()
    s3_client.put_object(Bucket=src, Key="data/a.tif", Body=b"A" * 1000)
    s3_client.put_object(Bucket=src, Key="data/zero.tif", Body=b"")
    config, creds = s3_settings(ws, s3_endpoint, src, dst)
    signed = f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAX%2F&X-Amz-Signature={SECRET}"
    sas = f"?st=2024-01-01&se=2030-01-01&sp=rl&sv=2021-06-08&sr=c&sig={SECRET}"
    good = [
        item("signed", {"data": {"href": f"s3://{src}/data/a.tif{signed}"}, "zero": {"href": f"s3://{src}/data/zero.tif"}}),
        item("no-assets"),
        item("relative", {"data": {"href": "../data/a.tif"}}, links=[{"rel": "self", "href": f"s3://{src}/items/r.json{sas}"}]),
    ]
    bad = [
        item("no-base", {"data": {"href": "./a.tif"}}),
        item("schemes", {"ftp": {"href": f"ftp://ftp.example.com/a.tif{sas}"}, "foo": {"href": "foo:bar"}}),
        item("gone", {"data": {"href": f"s3://{src}/data/missing.tif{signed}"}}),
    ]
    items = write_ndjson(ws["dir"] / "items.ndjson", good + bad)
    pkg = ws["dir"] / "pkg"
    source_before = listing(s3_client, src)
    outside_before = tree(ws["dir"], skip=(pkg, ws["tmp"]))

    proc = cli("build", str(items), str(pkg), "--config", config, tmpdir=ws["tmp"], env=creds)
    assert proc.returncode == 1, show(proc)
    err = proc.stderr
    supported = "supported are file, s3, gs, az (abfs), http(s), swift and webdav(s); add a rewrite rule"
    for line in ("not locked c/no-base/data: relative href './a.tif' has no base to resolve it against: give the "
                 "item a 'self' link or make the href absolute",
                 f"not locked c/schemes/ftp: href 'ftp://ftp.example.com/a.tif' has the unsupported scheme 'ftp': "
                 f"{supported}",
                 f"not locked c/schemes/foo: href 'foo:bar' has the unsupported scheme 'foo': {supported}",
                 f"not locked c/gone/data: s3://{src}/data/missing.tif: object not found",
                 "4 asset(s) could not be locked, so neither items.parquet nor assets.lock.parquet was written "
                 "(listed in lock-failures.parquet)",
                 f"note: 1 item(s) of {items} have no assets: kept in items.parquet, nothing to lock for them: no-assets",
                 f"note: signing query parameters removed from 4 href(s) of {items}"):
        assert line in err, f"{line!r} not in\n{show(proc)}"
    assert sorted(p.name for p in pkg.iterdir() if p.name != LEASE) == ["lock-failures.parquet"]
    failures = pq.read_table(pkg / "lock-failures.parquet").to_pylist()
    assert [(f["item_id"], f["asset_key"], f["href"], f["error_code"]) for f in failures] == [
        ("no-base", "data", "./a.tif", "bad_href"),
        ("schemes", "ftp", "ftp://ftp.example.com/a.tif", "bad_href"),
        ("schemes", "foo", "foo:bar", "bad_href"),
        ("gone", "data", f"s3://{src}/data/missing.tif", "not_found")]
    assert SECRET not in proc.stdout + proc.stderr and SECRET not in package_text(pkg)
    assert s3_endpoint.secret_access_key not in proc.stdout + proc.stderr + package_text(pkg)

    # the good items alone (one repeated exactly: dropped and counted): the zero-byte object is locked with
    # size 0, relocated and validated
    proc = cli("build", str(write_ndjson(ws["dir"] / "good.ndjson", [*good, good[1]])), str(pkg), "--config", config,
               "--json", "--checksum", tmpdir=ws["tmp"], env=creds)
    assert proc.returncode == 0, show(proc)
    out = json.loads(proc.stdout)
    assert (out["items"], out["locked"], out["failed"], out["items_without_assets"], out["signed_hrefs_stripped"],
            out["duplicates_dropped"]) == (3, 3, 0, 1, 2, 1)
    rows = {(r.item_id, r.asset_key): r for r in iter_lock(pkg / "assets.lock.parquet")}
    assert rows["signed", "zero"].size == 0 and rows["signed", "data"].size == 1000
    assert rows["relative", "data"].location.href() == f"s3://{src}/data/a.tif"  # resolved against the self link
    assert rows["signed", "data"].href == f"s3://{src}/data/a.tif"

    # a failing re-build leaves that package as it was: its items.parquet still matches its lock
    published = {name: (pkg / name).read_bytes() for name in ("items.parquet", "assets.lock.parquet")}
    proc = cli("build", str(items), str(pkg), "--config", config, tmpdir=ws["tmp"], env=creds)
    assert proc.returncode == 1, show(proc)
    assert {name: (pkg / name).read_bytes() for name in published} == published
    assert len(pq.read_table(pkg / "lock-failures.parquet")) == 4
    proc = cli("relocate", str(pkg), "--target", f"s3://{dst}/mirror", "--config", config, "--json",
               tmpdir=ws["tmp"], env=creds)
    assert proc.returncode == 0 and json.loads(proc.stdout)["copied"] == 3, show(proc)
    assert listing(s3_client, dst) == {"mirror/c/signed/data.tif": 1000, "mirror/c/signed/zero.tif": 0,
                                       "mirror/c/relative/data.tif": 1000}
    proc = cli("validate", str(pkg), "--deep", "--config", config, tmpdir=ws["tmp"], env=creds)
    assert proc.returncode == 0, show(proc)
    report = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {(r["asset"], r["status"], r["observed_size"]) for r in report} == {
        ("c/signed/data", "ok", 1000), ("c/signed/zero", "ok", 0), ("c/relative/data", "ok", 1000)}
    assert SECRET not in package_text(pkg)
    assert listing(s3_client, src) == source_before  # nothing written to the source
    assert tree(ws["dir"], skip=(pkg, ws["tmp"])) == {**outside_before, "good.ndjson": (ws["dir"] / "good.ndjson")
                                                      .stat().st_size}
    assert list(ws["tmp"].iterdir()) == []


# -- hostile asset keys and item ids: refused before any byte moves ---------------------------------------
def _local_package(ws: dict, name: str, ids_and_keys: list[tuple[str, str]]) -> Path:
    """A package of local stand-in files whose items and assets carry the given ids and keys."""
    src = ws["dir"] / "src"
    src.mkdir(exist_ok=True)
    items: dict[str, dict] = {}
    for n, (item_id, key) in enumerate(ids_and_keys):
        path = src / f"{name}-{n}.tif"
        path.write_bytes(b"x" * (n + 1))
        items.setdefault(item_id, item(item_id))["assets"][key] = {"href": str(path)}
    pkg = ws["dir"] / name
    ndjson_to_geoparquet(write_ndjson(ws["dir"] / f"{name}.ndjson", list(items.values())), pkg / "items.parquet")
    summary = build_lock(iter_items(pkg / "items.parquet"), StoreRegistry(), pkg / "assets.lock.parquet")
    assert summary.failures == [] and summary.rows == len(ids_and_keys)
    return pkg


def test_cli_hostile_names_and_templates_refused_before_any_byte_moves(ws, s3_endpoint, s3_client, s3_bucket):
    hostile = [("..", "data"), ("a\\b", "data"), ("bell\x07", "data"), ("x", "../../escape"), ("l" * 300, "data"),
               (NFC, "data"), (NFD, "data"), ("/".join(["d" * 250] * 4) + "/" + "e" * 40, "data"), ("fine", "data")]
    pkg = _local_package(ws, "hostile", hostile)
    other = ws["dir"] / "hostile-copy"  # one run per package at a time (the package lease): a second package
    shutil.copytree(pkg, other)
    config, creds = s3_settings(ws, s3_endpoint, s3_bucket)
    mirror = ws["dir"] / "mirror"
    pkg_before, outside_before = tree(pkg), tree(ws["dir"], skip=(pkg, other, ws["tmp"]))
    results = cli_many({
        "s3": {"args": ["relocate", str(pkg), "--target", f"s3://{s3_bucket}/m", "--config", config],
               "tmpdir": ws["tmp"], "env": creds},
        "dots": {"args": ["relocate", str(other), "--target", str(mirror), "--key-template",
                          "../{item_id}/{asset_key}"], "tmpdir": ws["tmp"]},
        "absolute": {"args": ["relocate", str(pkg), "--target", str(mirror), "--key-template", "/etc/{item_id}",
                              "--dry-run"], "tmpdir": ws["tmp"]},
    })
    proc = results["s3"]
    assert proc.returncode == 2, show(proc)
    err = proc.stderr
    for fragment in ("stac-packager relocate: error: destination template '{collection}/{item_id}/{asset_key}{ext}' "
                     "is unusable, nothing was copied: 6 key(s) refused",
                     "destination key 'c/../data.tif' (asset 'c/../data') has an empty, '.' or '..' path segment",
                     "destination key 'c/a\\\\b/data.tif' (asset 'c/a\\\\b/data') has a backslash",
                     "destination key 'c/bell\\x07/data.tif' (asset 'c/bell\\x07/data') contains control characters",
                     "(asset 'c/x/../../escape') has an empty, '.' or '..' path segment",
                     "has a path segment of 300 bytes",
                     "is 1055 bytes (UTF-8), over the limit of 1024 bytes for an object key",
                     f"1 collision(s): c/{NFC}/data and c/{NFD}/data -> c/{NFD}/data.tif (the same name once "
                     "Unicode-normalised, NFC vs NFD: 'c/\\xe9/data.tif' vs 'c/e\\u0301/data.tif')",
                     "To mend: change the template (--key-template / relocation.key_template) or the offending id"):
        assert fragment in err, f"{fragment!r} not in\n{show(proc)}"
    assert "more" not in err and len(err) < 6000
    for name, fragment in (("dots", "destination template '../{item_id}/{asset_key}' is refused before any byte "
                                    "moves: every key it makes would leave the target"),
                           ("absolute", "destination template '/etc/{item_id}' is refused before any byte moves")):
        assert results[name].returncode == 2 and fragment in results[name].stderr, show(results[name])
    assert listing(s3_client, s3_bucket) == {}
    assert not mirror.exists()
    assert tree(pkg) == pkg_before == tree(other)
    assert tree(ws["dir"], skip=(pkg, other, ws["tmp"])) == outside_before
    assert list(ws["tmp"].iterdir()) == []


def test_odd_but_safe_names_stay_inside_the_target_on_s3_and_disk(ws, s3_endpoint, s3_bucket, s3_client):
    odd = [("a/b", "data"), ("日本語", "データ"), (NFD, "data"), ("sp ace", "with space"), ("%2e%2e", "data"),
           ("a%2Fb", "data"), ("x#y?z", "data"), ("q" * 255, "data")]
    pkg = _local_package(ws, "odd", odd)
    registry = StoreRegistry([StorageProfile(
        name="s3", url=f"s3://{s3_bucket}", endpoint=s3_endpoint.endpoint, region=s3_endpoint.region,
        access_key_id=s3_endpoint.access_key_id, secret_access_key=s3_endpoint.secret_access_key)])
    mirror = ws["dir"] / "mirror" / "deep"
    for target in (f"s3://{s3_bucket}/pre/fix", mirror.as_uri()):
        from packager.publish import package_location

        out = ws["dir"] / f"relocated-{len(target)}.parquet"
        summary = relocate(pkg / "assets.lock.parquet", package_location(target, registry), registry, out,
                           ws["dir"] / "failures.parquet", SETTINGS)
        assert summary.failures == [] and summary.copied == len(odd)
        checked = validate(out, registry, ws["dir"] / "report.parquet", deep=True)
        assert checked.clean and checked.rows == len(odd)
    expected = {f"c/{item_id}/{key}.tif" for item_id, key in odd}
    assert {k.removeprefix("pre/fix/") for k in listing(s3_client, s3_bucket)} == expected
    assert all(k.startswith("pre/fix/c/") for k in listing(s3_client, s3_bucket))
    assert set(tree(mirror)) == expected
    assert set(tree(ws["dir"] / "mirror")) == {f"deep/{k}" for k in expected}  # nothing beside the target


# -- lock files with a wrong schema, truncated parquet ---------------------------------------------------
def test_cli_wrong_schema_and_truncated_parquet_are_clear_errors(ws):
    pkg = _local_package(ws, "pkg", [("i1", "data"), ("i2", "data")])
    d = ws["dir"]
    lock = (pkg / "assets.lock.parquet").read_bytes()
    (d / "truncated.lock.parquet").write_bytes(lock[: len(lock) // 2])
    table = pq.read_table(pkg / "assets.lock.parquet")
    pq.write_table(table.set_column(table.schema.get_field_index("size_bytes"), "size_bytes",
                                    table.column("size_bytes").cast("string")), d / "mistyped.parquet")
    stacpkg = table.select([f.name for f in table.schema][:9]).replace_schema_metadata(
        {b"stacpkg:schema-kind": b"asset-lock", b"stacpkg:schema-version": b"v1"})
    pq.write_table(stacpkg, d / "stacpkg-v1.parquet")
    # a package whose items.parquet was cut short: relocate refuses before copying anything
    cut = _local_package(ws, "cut", [("i1", "data")])
    items = (cut / "items.parquet").read_bytes()
    (cut / "items.parquet").write_bytes(items[: len(items) // 2])
    broken_lock = _local_package(ws, "broken-lock", [("i1", "data")])
    (broken_lock / "assets.lock.parquet").write_bytes(lock[: len(lock) // 3])
    mirror = d / "mirror"
    before = tree(d, skip=(ws["tmp"],))

    results = cli_many({
        "truncated": {"args": ["validate", str(d / "truncated.lock.parquet")], "tmpdir": ws["tmp"]},
        "mistyped": {"args": ["relocate", str(d / "mistyped.parquet"), "--dry-run", "--target", str(mirror)],
                     "tmpdir": ws["tmp"]},
        "random": {"args": ["validate", str(pkg / "items.parquet")], "tmpdir": ws["tmp"]},
        "stacpkg": {"args": ["validate", str(d / "stacpkg-v1.parquet"), "--no-report"], "tmpdir": ws["tmp"]},
        "cut-items": {"args": ["relocate", str(cut), "--target", str(mirror)], "tmpdir": ws["tmp"]},
        "inspect": {"args": ["inspect", str(broken_lock)], "tmpdir": ws["tmp"]},
    })
    expected = {
        "truncated": [f"{d}/truncated.lock.parquet is not a complete parquet file", "it was cut short",
                      "re-run the lock (stac-packager build, or materialize assets_lock)"],
        "mistyped": [f"{d}/mistyped.parquet is not a valid asset lock: column size_bytes is string, expected int64",
                     "re-run the lock"],
        "random": [f"{pkg}/items.parquet is not an asset lock: missing column(s) item_id, asset_key, store_type, key"],
        "cut-items": [f"{cut}/items.parquet is not a complete parquet file", "re-create it"],
        "inspect": [f"{broken_lock}/assets.lock.parquet is not a complete parquet file", "re-run the lock"],
    }
    for name, fragments in expected.items():
        proc = results[name]
        assert proc.returncode == 2, f"{name}: {show(proc)}"
        for fragment in fragments:
            assert fragment in proc.stderr, f"{name}: {fragment!r} not in\n{show(proc)}"
        assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, f"{name}: {show(proc)}"
    ok = results["stacpkg"]  # a stacpkg v1 lock is valid input
    assert ok.returncode == 0, show(ok)
    assert [json.loads(line)["status"] for line in ok.stdout.splitlines()] == ["ok", "ok"]
    assert not mirror.exists()
    assert tree(d, skip=(ws["tmp"],)) == before
    assert list(ws["tmp"].iterdir()) == []


# -- missing and zero-byte objects on Swift and WebDAV (engine) -----------------------------------------
def test_missing_and_zero_byte_objects_on_swift_and_webdav(ws, swift_server, swift_container, webdav_server):
    conn = swift_server.connection()
    conn.put_object(swift_container, "src/zero.bin", b"")
    conn.put_object(swift_container, "src/data.bin", b"D" * 300)
    dav_prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    registry = StoreRegistry([
        StorageProfile(name="swift", url=f"swift://{swift_container}", auth_url=swift_server.auth_url,
                       user=swift_server.user, key=swift_server.key),
        StorageProfile(name="dav", url=webdav_server.href_origin, username=webdav_server.user,
                       password=webdav_server.password)])
    base = f"swift://{swift_container}/src"
    items = [item("z", {"zero": {"href": f"{base}/zero.bin?temp_url_sig={SECRET}&temp_url_expires=1"},
                        "data": {"href": f"{base}/data.bin"}}),
             item(NFD + "/ü é", {"data": {"href": f"{base}/data.bin"}}),
             item("gone", {"data": {"href": f"{base}/missing.bin"},
                           "dav": {"href": f"{webdav_server.href_origin}/{dav_prefix}/missing.bin"}})]
    summary = build_lock(items, registry, ws["dir"] / "lock.parquet")
    assert summary.rows == 3 and sorted((f.item_id, f.asset_key, f.error_code, f.href) for f in summary.failures) == [
        ("gone", "data", "not_found", f"{base}/missing.bin"),
        ("gone", "dav", "not_found", f"{webdav_server.href_origin}/{dav_prefix}/missing.bin")]
    assert all(f.href in f.error for f in summary.failures)
    assert SECRET not in parquet_text(ws["dir"] / "lock.parquet")
    assert {r.asset_key: r.size for r in iter_lock(ws["dir"] / "lock.parquet") if r.item_id == "z"} == \
        {"zero": 0, "data": 300}

    dav_before = tree(webdav_server.root)
    from packager.publish import package_location

    target = package_location(f"{webdav_server.href_origin}/{dav_prefix}/t", registry)
    moved = relocate(ws["dir"] / "lock.parquet", target, registry, ws["dir"] / "relocated.parquet",
                     ws["dir"] / "failures.parquet", SETTINGS)
    assert moved.failures == [] and moved.copied == 3
    report = validate(ws["dir"] / "relocated.parquet", registry, ws["dir"] / "report.parquet", deep=True)
    assert report.clean and report.rows == 3
    new = {k: v for k, v in tree(webdav_server.root).items() if k not in dav_before}
    assert new == {f"{dav_prefix}/t/c/z/zero.bin": 0, f"{dav_prefix}/t/c/z/data.bin": 300,
                   f"{dav_prefix}/t/c/{NFD}/ü é/data.bin": 300}


# -- a STAC API that returns an item again on a later page, and signed hrefs -----------------------------
@contextmanager
def paging_drift_proxy(upstream: str) -> Iterator[tuple[str, dict]]:
    """Forward to ``upstream``; page 2 of a search also carries page 1's first item (data changed while
    paging), and every asset href is served signed (an API that hands out SAS URLs)."""
    up = urlsplit(upstream)
    state: dict[str, Any] = {"pages": 0, "first": None}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("connection", "content-length", "accept-encoding")}
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            conn.close()
            if self.path.startswith("/search") and resp.status == 200:
                page = json.loads(payload)
                with lock:
                    state["pages"] += 1
                    if state["pages"] == 1 and page["features"]:
                        state["first"] = json.loads(json.dumps(page["features"][0]))
                    elif state["pages"] == 2 and state["first"] is not None:
                        page["features"].append(state["first"])
                for feature in page["features"]:
                    for asset in feature.get("assets", {}).values():
                        asset["href"] += f"?se=2030-01-01&sp=r&sig={SECRET}"
                payload = json.dumps(page).encode()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length",
                                     "content-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle

    with serve_http(Handler) as url:
        yield url, state


def test_search_duplicates_across_pages_are_dropped_and_signed_hrefs_stripped(ws, stac_api_url,
                                                                             stac_synthetic_items):
    ids = [it["id"] for it in stac_synthetic_items[:12]]
    n_assets = sum(len(it["assets"]) for it in stac_synthetic_items[:12])
    request = SearchRequest(ids=ids, limit=5)
    with paging_drift_proxy(stac_api_url) as (url, state):
        summary = search_to_ndjson(url, request, ws["dir"] / "found.ndjson", backoff_factor=0.01)
    assert state["pages"] == 3
    found = [json.loads(line) for line in (ws["dir"] / "found.ndjson").read_text().splitlines()]
    assert sorted(it["id"] for it in found) == sorted(ids) and len(found) == 12
    assert summary.returned == 12 and summary.duplicates_dropped == 1
    assert summary.duplicate_ids == [f"{state['first']['collection']}/{state['first']['id']}"]
    assert summary.signed_hrefs_stripped == n_assets
    assert SECRET not in (ws["dir"] / "found.ndjson").read_text()

    out = ws["dir"] / "found.parquet"
    with paging_drift_proxy(stac_api_url) as (url, _):
        proc = cli("search", "--url", url, "--ids", ",".join(ids), "--limit", "5", "-o", str(out), "--json",
                   tmpdir=ws["tmp"])
    assert proc.returncode == 0, show(proc)
    result = json.loads(proc.stdout)
    assert (result["returned"], result["duplicates_dropped"], result["signed_hrefs_stripped"]) == (12, 1, n_assets)
    assert result["duplicate_ids"] == summary.duplicate_ids
    assert "note: 1 duplicate item(s) dropped: the API returned them again on a later page" in proc.stderr
    assert pq.read_table(out).num_rows == 12 and SECRET not in parquet_text(out)
    assert SECRET not in proc.stdout + proc.stderr
    assert list(ws["tmp"].iterdir()) == []
