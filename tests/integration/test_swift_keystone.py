"""Swift with Keystone v3 auth, against a real Keystone and a Swift proxy that validates its tokens.

``keystone_swift`` (tests/fixtures_keystone.py) runs Keystone 30 from its own venv and a second Swift proxy
(``authtoken keystoneauth``) in front of the storage servers of ``swift_server``. The store gets its token
and its storage URL (the catalog's object-store endpoint) from Keystone, once per store; a token revoked in
Keystone is re-acquired on the 401; failed authentications are typed errors naming the auth URL and never
the password. The last tests relocate into Keystone Swift through the engine with credentials from a keystore
key added with ``stac-packager-keys add --type swift`` (password from the environment) and validate deeply.

Skipped only when the Keystone venv is missing (``bash scripts/keystone-venv.sh``), and failed instead under CI.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from devservers.process import free_port
from packager.errors import AccessDenied, ConfigError, ObjectNotFound, TransientStoreError
from packager.keystore import Keystore, PrivateKeySource, generate_private_key, write_private_key
from packager.locations import parse_href
from packager.lock import build_lock
from packager.profiles import StorageProfile
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry
from packager.stores.swift import SwiftStore, build_swift_store
from packager.validate import validate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KiB, MiB = 1 << 10, 1 << 20
SETTINGS = RelocationSettings(concurrency=4, memory_limit=64 * MiB, chunk_size=5 * MiB, put_concurrency=2)


def pattern(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _store(keystone_swift, container: str, **changes) -> SwiftStore:
    fields = {**keystone_swift.profile_fields(), "segment_size_mib": 0.25, "max_retries": 3, **changes}
    profile = StorageProfile(name="ks", url=f"swift://{container}", **fields)
    return build_swift_store(parse_href(f"swift://{container}"), profile)


def test_store_operations_through_keystone(keystone_swift, keystone_container):
    store = _store(keystone_swift, keystone_container)
    conn = keystone_swift.connection()
    small, large = pattern(3000, "small"), pattern(1 * MiB + 12345, "large")  # large: 5 segments of 256 KiB

    async def main():
        await store.put_bytes("a/small.bin", small, content_type="application/octet-stream",
                              metadata={"file-checksum": "1220abc"})
        facts = await store.head("a/small.bin")
        assert facts.size == len(small) and facts.etag == hashlib.md5(small).hexdigest()
        assert await store.get_range("a/small.bin", 100, 200) == small[100:200]
        assert (await store.read_metadata("a/small.bin"))["file-checksum"] == "1220abc"

        await store.put_stream("a/large.bin", chunks_of(large, 100 * KiB), chunk_size=100 * KiB,
                               max_concurrency=2)
        assert b"".join([c async for c in store.stream("a/large.bin", 64 * KiB)]) == large
        assert await store.get_range("a/large.bin", 300 * KiB, 300 * KiB + 10) == large[300 * KiB:300 * KiB + 10]
        manifest = conn.get_object(keystone_container, "a/large.bin", query_string="multipart-manifest=get")[1]
        assert len(json.loads(manifest)) == 5, "a static large object of five 256 KiB segments"

        # many requests at once, on many connections: still the one token
        sizes = await asyncio.gather(*(store.head(k) for k in ["a/small.bin", "a/large.bin"] * 8))
        assert {f.size for f in sizes} == {len(small), len(large)}

        listed = {o.key: o.facts.size async for o in store.list("a")}
        assert listed == {"a/small.bin": len(small), "a/large.bin": len(large)}
        assert [o async for o in store.list("b")] == []

        await store.delete("a/large.bin")
        await store.delete("a/small.bin")
        await store.delete("a/never-there.bin")  # a missing object is fine
        with pytest.raises(ObjectNotFound, match=f"swift://{keystone_container}/a/small.bin"):
            await store.head("a/small.bin")
        return await store.storage_url()

    try:
        storage_url = asyncio.run(main())
    finally:
        store.close()
    # the storage URL is the catalog's object-store endpoint of the project
    assert storage_url == f"{keystone_swift.proxy_url}/v1/AUTH_{keystone_swift.accounts.project_id}"
    assert store.token_acquisitions == 1, "one token per store, shared by every connection"
    assert store.request_retries == 0
    # the large object was a static large object: its segments are gone with it
    assert conn.get_container(keystone_container)[1] == []
    assert conn.get_container(f"{keystone_container}_segments")[1] == []


def test_revoked_token_is_reacquired_once(keystone_swift, keystone_container):
    store = _store(keystone_swift, keystone_container)
    ks = keystone_swift.keystone
    admin = ks.admin_token()

    async def heads(n: int) -> None:
        facts = await asyncio.gather(*(store.head("obj") for _ in range(n)))
        assert {f.size for f in facts} == {5}

    try:
        asyncio.run(store.put_bytes("obj", b"hello"))
        asyncio.run(heads(6))  # several idle connections, all holding the first token
        first = store._token
        assert (store.token_acquisitions, store.request_retries) == (1, 0)
        assert ks.token_is_valid(first, admin_token=admin)

        ks.revoke_token(first, admin_token=admin)  # DELETE /v3/auth/tokens
        assert not ks.token_is_valid(first, admin_token=admin)

        asyncio.run(heads(6))  # every stale connection gets a 401, and all adopt one new token
        second = store._token
        assert second != first and ks.token_is_valid(second, admin_token=admin)
        assert store.token_acquisitions == 2, "the revoked token was replaced by exactly one new token"
        assert 1 <= store.request_retries <= 6, "each request refused with the revoked token was sent once more"
        retries = store.request_retries

        asyncio.run(heads(4))  # and things are quiet again
        assert (store.token_acquisitions, store.request_retries) == (2, retries)
    finally:
        store.close()
    print(f"\nrevoked token: {store.token_acquisitions} tokens acquired, {store.request_retries} request(s) retried")


def _failure(store: SwiftStore) -> Exception:
    try:
        with pytest.raises(Exception) as info:
            asyncio.run(store.head("anything"))
    finally:
        store.close()
    return info.value


def test_wrong_password_is_access_denied_naming_auth_url_without_secret(keystone_swift, keystone_container):
    wrong = f"Wr0ng-{uuid.uuid4().hex[:12]}"
    error = _failure(_store(keystone_swift, keystone_container, key=wrong))
    message = str(error)
    assert isinstance(error, AccessDenied), repr(error)
    assert keystone_swift.auth_url in message and f"swift://{keystone_container}" in message
    assert "check the user name, the password" in message and "'swiftuser'" in message
    for secret in (wrong, keystone_swift.accounts.password):
        assert secret not in message and secret not in repr(error)
    print(f"\n{type(error).__name__}: {message}")


def test_keystone_auth_failures_are_typed(keystone_swift, keystone_container):
    password = keystone_swift.accounts.password
    # a project the user has no role on (or that does not exist): Keystone says 401, like a wrong password
    unknown = _failure(_store(keystone_swift, keystone_container, project_name="no-such-project"))
    assert isinstance(unknown, AccessDenied) and "'no-such-project'" in str(unknown)
    # nothing listening at the auth URL
    dead = f"http://127.0.0.1:{free_port()}/v3"
    unreachable = _failure(_store(keystone_swift, keystone_container, auth_url=dead, max_retries=0))
    assert isinstance(unreachable, TransientStoreError) and dead in str(unreachable)
    assert "cannot be reached" in str(unreachable)
    # a region without Swift in the catalog
    elsewhere = _failure(_store(keystone_swift, keystone_container, region_name="Mars-1"))
    assert isinstance(elsewhere, ConfigError) and "region 'Mars-1'" in str(elsewhere)
    assert "no object-store endpoint" in str(elsewhere) and keystone_swift.auth_url in str(elsewhere)
    # Keystone lets the user in, Swift does not: 'reader' is not among keystoneauth's operator_roles
    ks = keystone_swift.keystone
    admin = ks.admin_token()
    reader_password = f"rdr-{uuid.uuid4().hex[:12]}"
    reader = ks.ensure_user("reader-only", reader_password, admin=admin, project_id=keystone_swift.accounts.project_id)
    ks.grant("reader", user_id=reader, project_id=keystone_swift.accounts.project_id, admin=admin)
    refused = _failure(_store(keystone_swift, keystone_container, user="reader-only", key=reader_password))
    assert isinstance(refused, AccessDenied) and "HTTP 403" in str(refused) and "operator_roles" in str(refused)
    assert "'reader-only'" in str(refused) and reader_password not in str(refused)
    for error in (unknown, unreachable, elsewhere):
        assert password not in str(error)
    print("", *(f"{type(e).__name__}: {e}" for e in (unknown, unreachable, elsewhere, refused)), sep="\n")


def test_openstack_environment_variables_as_fallbacks(keystone_swift, keystone_container, monkeypatch):
    acc = keystone_swift.accounts
    for name, value in {"OS_AUTH_URL": keystone_swift.auth_url, "OS_USERNAME": acc.username,
                        "OS_PASSWORD": acc.password, "OS_PROJECT_NAME": acc.project_name,
                        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                        "OS_REGION_NAME": keystone_swift.region, "OS_IDENTITY_API_VERSION": "3"}.items():
        monkeypatch.setenv(name, value)
    registry = StoreRegistry([StorageProfile(name="env", url=f"swift://{keystone_container}")])
    location = parse_href(f"swift://{keystone_container}/env.txt")
    store = registry.store_for(location)
    try:
        asyncio.run(store.put_bytes(location.key, b"from the environment"))
        assert asyncio.run(store.get_range(location.key, 0, 4)) == b"from"
    finally:
        store.close()


# -- relocation through the engine, credentials from a keystore key -------------------------------------------


def _keys_cli(keystore: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "packager.keys", "--keystore", str(keystore), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def keystone_keystore(keystone_swift, tmp_path) -> tuple[Keystore, str]:
    """A keystore holding Keystone v3 Swift key 'ks-swift', added through the CLI (password from the environment)."""
    private = generate_private_key(2048)
    write_private_key(tmp_path / "pk.pem", private)
    path = tmp_path / "ks.json"
    Keystore.create(private, source=str(path)).save(path)
    acc = keystone_swift.accounts
    add = _keys_cli(path, "add", "ks-swift", "--type", "swift", "--auth-url", keystone_swift.auth_url,
                    "--username", acc.username, "--project-name", acc.project_name, "--user-domain-name", "Default",
                    "--project-domain-name", "Default", "--region-name", keystone_swift.region,
                    "--secret-from-env", "password=KS_SWIFT_PASSWORD", env={"KS_SWIFT_PASSWORD": acc.password})
    assert acc.password not in " ".join(add.args)
    listed = json.loads(_keys_cli(path, "list", "--json", env={}).stdout)
    (key,) = listed["keys"]
    assert key["auth"] == "keystone v3" and key["fields"]["auth_version"] == "3"
    assert acc.password not in json.dumps(listed) and acc.password not in path.read_text()
    return Keystore.load(path, private_key=PrivateKeySource(path=tmp_path / "pk.pem")), acc.password


@pytest.mark.parametrize("source_kind", ["local", "s3"])
def test_relocation_into_keystone_swift_with_a_keystore_key(source_kind, keystone_swift, keystone_container,
                                                            keystone_keystore, request, tmp_path):
    keystore, password = keystone_keystore
    profiles = [StorageProfile(name="swift", url=f"swift://{keystone_container}", keystore_key="ks-swift",
                               segment_size_mib=0.25)]
    if source_kind == "s3":
        s3, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
        profiles.append(StorageProfile(name="s3", url=f"s3://{bucket}", endpoint=s3.endpoint, region=s3.region,
                                       access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key))
        root = parse_href(f"s3://{bucket}/src", endpoint=s3.endpoint)
    else:
        root = parse_href((tmp_path / "src").as_uri())
    registry = StoreRegistry(profiles, keystore=keystore)
    sizes = {"empty": 0, "small": 1500, "segmented": 700 * KiB}
    expected: dict[str, bytes] = {}
    items = []

    async def seed():
        source = registry.store_for(root)
        for name, size in sizes.items():
            location = root.child(f"{name}.bin")
            expected[name] = data = pattern(size, f"{source_kind}-{name}")
            await source.put_bytes(location.key, data)
            items.append({"type": "Feature", "stac_version": "1.0.0", "id": f"item-{name}", "collection": "c",
                          "geometry": None, "properties": {}, "links": [],
                          "assets": {"data": {"href": location.href(), "type": "application/octet-stream"}}})

    asyncio.run(seed())
    lock = tmp_path / "assets.lock.parquet"
    summary = build_lock(items, registry, lock, checksum=True)
    assert not summary.failures, summary.failures
    destination = parse_href(f"swift://{keystone_container}/relocated-{source_kind}")
    out_lock, failures = tmp_path / "relocated.parquet", tmp_path / "failures.parquet"
    result = relocate(lock, destination, registry, out_lock, failures, SETTINGS)
    assert not result.failures, [f.error for f in result.failures]
    assert (result.copied, result.bytes_copied) == (len(sizes), sum(sizes.values()))

    target = registry.store_for(destination)
    assert target.key_name == "ks-swift"  # a GuardedStore: the keystore key's capabilities apply
    conn = keystone_swift.connection()
    rows = pq.read_table(out_lock).to_pylist()
    for row in rows:
        copy = parse_href(row["href"])
        assert copy.container == keystone_container and copy.key.startswith(f"relocated-{source_kind}/")
        name = row["item_id"].removeprefix("item-")
        assert conn.get_object(keystone_container, copy.key)[1] == expected[name]
        assert row["checksum"] == "1220" + hashlib.sha256(expected[name]).hexdigest()
    segmented = next(parse_href(r["href"]).key for r in rows if r["item_id"] == "item-segmented")
    assert conn.head_object(keystone_container, segmented).get("x-static-large-object", "").lower() == "true"

    report = validate(out_lock, registry, tmp_path / "report.parquet", deep=True)
    assert report.clean, report.first_failures
    assert report.bytes_read == sum(sizes.values())
    assert target.token_acquisitions == 1
    for path in (out_lock, tmp_path / "report.parquet", lock):
        assert password.encode() not in path.read_bytes()
