"""One contract for every storage backend, against real servers: S3 (SeaweedFS or TEST_S3_*), OpenStack Swift
(SAIO), WebDAV (wsgidav), Azure Blob Storage (Azurite) and local files.

Every store is built the way the engine builds it: through :class:`StoreRegistry` from storage profiles.
The same tests run on each: head, ranges, streaming reads, a put larger than one part/segment, whole-or-nothing
uploads, paginated listing, delete, server-side copy, ETag/size semantics, and typed not-found and
wrong-credential errors whose messages name the object but never the secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import httpx
import pytest

from packager.errors import AccessDenied, ConfigError, ObjectNotFound
from packager.locations import Location, parse_href
from packager.profiles import StorageProfile
from packager.stores import Store, StoreRegistry
from packager.stores.obstore_backend import CHECKSUM_METADATA
from packager.stores.swift import SwiftStore
from packager.stores.webdav import TEMP_PREFIX, WebDavStore

pytestmark = pytest.mark.integration

MiB = 1 << 20
BACKENDS = ["s3", "swift", "webdav", "local", "azure"]


def run(coro):
    return asyncio.run(coro)


def payload(size: int, seed: str = "x") -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 2048  # 64 KiB, deterministic, not compressible to nothing
    return (block * (size // len(block) + 1))[:size]


async def chunked(data: bytes, size: int, *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, start in enumerate(range(0, len(data), size)):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("source broke off")
        yield data[start:start + size]
        await asyncio.sleep(0)


def same_etag(returned: str | None, headed: str | None) -> bool:
    """A put's ETag is None or the HEAD's (obstore's local store quotes it on put, not on head)."""
    return returned is None or returned.strip('"') == (headed or "").strip('"')


async def collect(store: Store, prefix: str) -> list:
    return [o async for o in store.list(prefix)]


@dataclass
class Backend:
    """A store under test, with what a test needs to know about its backend."""

    name: str
    registry: StoreRegistry
    base: Location                      # the test's private prefix
    large_chunk: int                    # put_stream chunk size that makes the large object multi-part
    large_size: int
    page_size: int | None               # listing page size (None: the backend lists without pages)
    wrong: list[tuple[Store, str]] = field(default_factory=list)  # (store with a bad secret, that secret)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.registry.store_for(self.base)

    def key(self, name: str) -> str:
        return self.base.child(name).key

    def listed(self, key: str) -> str:
        """A listed key as a location key (obstore lists local files without the leading '/')."""
        return "/" + key.lstrip("/") if self.name == "local" else key

    def href(self, name: str) -> str:
        return self.base.child(name).href()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Iterator[Backend]:
    yield request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def s3_backend(s3_endpoint, s3_bucket) -> Backend:
    profile = StorageProfile(name="s3-test", url=f"s3://{s3_bucket}", endpoint=s3_endpoint.endpoint,
                             region=s3_endpoint.region, access_key_id=s3_endpoint.access_key_id,
                             secret_access_key=s3_endpoint.secret_access_key, max_retries=0)
    bad_secret = "wrong-" + uuid.uuid4().hex
    bad = StorageProfile(**{**profile.model_dump(), "name": "s3-bad", "secret_access_key": bad_secret})
    base = parse_href(f"s3://{s3_bucket}/contract", endpoint=s3_endpoint.endpoint)
    return Backend("s3", StoreRegistry([profile]), base, large_chunk=5 * MiB, large_size=12 * MiB,
                   page_size=1000, wrong=[(StoreRegistry([bad]).store_for(base), bad_secret)])


def swift_profile(server, container: str, **extra: Any) -> StorageProfile:
    return StorageProfile(name=f"swift-{container}", url=f"swift://{container}", auth_url=server.auth_url,
                          user=server.user, key=server.key, segment_size_mib=0.5, max_retries=1, **extra)


@pytest.fixture
def swift_backend(swift_server, swift_container) -> Backend:
    registry = StoreRegistry([swift_profile(swift_server, swift_container)])
    base = parse_href(f"swift://{swift_container}/contract")
    store = registry.store_for(base)
    store.list_page_size = 10
    bad_key = "wrong-" + uuid.uuid4().hex
    bad_token = "AUTH_tk" + uuid.uuid4().hex
    wrong_key = StoreRegistry([swift_profile(swift_server, swift_container).model_copy(
        update={"key": _secret(bad_key)})]).store_for(base)
    wrong_token = StoreRegistry([StorageProfile(
        name="swift-token", url=f"swift://{swift_container}", storage_url=swift_server.storage_url,
        token=bad_token, max_retries=0)]).store_for(base)
    return Backend("swift", registry, base, large_chunk=256 * 1024, large_size=int(2.3 * MiB), page_size=10,
                   wrong=[(wrong_key, bad_key), (wrong_token, bad_token)],
                   extra={"server": swift_server, "container": swift_container})


@pytest.fixture
def webdav_backend(webdav_server) -> Backend:
    origin = webdav_server.href_origin
    profile = StorageProfile(name="dav", url=origin, username=webdav_server.user, password=webdav_server.password)
    base = parse_href(f"{origin}/contract-{uuid.uuid4().hex[:8]}")
    bad_secret = "wrong-" + uuid.uuid4().hex
    bad = StorageProfile(name="dav-bad", url=origin, username=webdav_server.user, password=bad_secret)
    return Backend("webdav", StoreRegistry([profile]), base, large_chunk=1 * MiB, large_size=int(3.5 * MiB),
                   page_size=None, wrong=[(StoreRegistry([bad]).store_for(base), bad_secret)],
                   extra={"server": webdav_server})


@pytest.fixture
def azure_backend(azure_container, azure_profile, azure_blob_service) -> Backend:
    """Azurite: a block blob above one chunk goes up as blocks + a block list; Azure lists 5,000 per page."""
    registry = StoreRegistry([azure_profile(azure_container, max_retries=1)])
    bad_key = base64.b64encode(os.urandom(64)).decode()  # well-formed, but not the account's key
    bad = azure_profile(azure_container, name="azure-bad", max_retries=0, secret_options={"account_key": bad_key})
    base = parse_href(f"az://{azure_container}/contract")
    return Backend("azure", registry, base, large_chunk=1 * MiB, large_size=int(3.5 * MiB), page_size=5000,
                   wrong=[(StoreRegistry([bad]).store_for(base), bad_key)],
                   extra={"container": azure_blob_service.get_container_client(azure_container)})


@pytest.fixture
def local_backend(tmp_path) -> Backend:
    base = parse_href((tmp_path / "contract").as_uri())
    return Backend("local", StoreRegistry([]), base, large_chunk=1 * MiB, large_size=int(3.5 * MiB),
                   page_size=None)


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


# -- the contract ------------------------------------------------------------------------------------
def test_put_head_ranges_stream(backend: Backend) -> None:
    store, key = backend.store, backend.key("dir/small.bin")
    assert isinstance(store, Store) and store.describe
    data = payload(300_000, backend.name)

    async def main():
        etag = await store.put_bytes(key, data, content_type="application/octet-stream")
        facts = await store.head(key)
        assert facts.size == len(data)
        assert facts.etag  # every backend reports one; none is a content hash we rely on
        assert same_etag(etag, facts.etag), (etag, facts.etag)
        assert facts.last_modified is not None and facts.last_modified.utcoffset() == UTC.utcoffset(None)
        assert await store.head(key) == facts  # stable while unchanged: what validation compares
        assert await store.get_range(key, 0, 10) == data[:10]
        assert await store.get_range(key, 1000, 70_000) == data[1000:70_000]
        assert await store.get_range(key, len(data) - 5, len(data)) == data[-5:]
        assert await store.get_ranges(key, [0, 5, 299_990], [3, 65_541, 300_000]) == \
            [data[0:3], data[5:65_541], data[299_990:]]
        chunks = [c async for c in store.stream(key, 64 * 1024)]
        assert b"".join(chunks) == data
        assert all(len(c) >= 64 * 1024 for c in chunks[:-1])
        return facts

    facts = run(main())
    if backend.name == "swift":  # a plain object: the content MD5, unquoted
        assert facts.etag == hashlib.md5(data).hexdigest()
    if backend.name == "s3":
        assert facts.etag == f'"{hashlib.md5(data).hexdigest()}"'
    if backend.name == "azure":  # an opaque version stamp, quoted; a rewrite of the same bytes gets a new one
        assert re.fullmatch(r'"0x[0-9A-F]+"', facts.etag), facts.etag
        run(backend.store.put_bytes(key, data))
        assert run(backend.store.head(key)).etag != facts.etag


def test_large_put_stream_is_multipart_and_whole(backend: Backend) -> None:
    store, key = backend.store, backend.key("large/big.bin")
    data = payload(backend.large_size, "large")
    checksum = "1220" + hashlib.sha256(data).hexdigest()

    async def main():
        etag = await store.put_stream(key, chunked(data, backend.large_chunk), chunk_size=backend.large_chunk,
                                      max_concurrency=2, content_type="image/tiff",
                                      metadata={CHECKSUM_METADATA: checksum})
        facts = await store.head(key)
        assert facts.size == len(data)
        assert same_etag(etag, facts.etag), (etag, facts.etag)
        assert hashlib.sha256(b"".join([c async for c in store.stream(key, MiB)])).hexdigest() == checksum[4:]
        assert await store.get_range(key, MiB - 3, MiB + 3) == data[MiB - 3:MiB + 3]  # across a part boundary
        meta = await store.read_metadata(key)
        listed = {backend.listed(o.key): o.facts for o in await collect(store, backend.key("large"))}
        return facts, meta, listed

    facts, meta, listed = run(main())
    if store.keeps_metadata and backend.name != "local":
        assert meta.get(CHECKSUM_METADATA) == checksum
    if backend.name == "webdav":
        assert meta == {}
    assert listed[key].size == len(data)
    if backend.name == "s3":
        assert facts.etag.endswith('-3"')  # 12 MiB in 5 MiB parts
    if backend.name == "swift":  # a static large object: quoted ETag, not the content MD5, listed alike
        assert facts.etag.startswith('"') and hashlib.md5(data).hexdigest() not in facts.etag
        assert listed[key] == facts
        conn = backend.extra["server"].connection()
        headers = conn.head_object(backend.extra["container"], key)
        assert headers.get("x-static-large-object") == "True"
        segments = conn.get_container(f"{backend.extra['container']}_segments")[1]
        assert len(segments) == 5  # 2.3 MiB in 0.5 MiB segments
    if backend.name == "azure":
        assert listed[key].size == facts.size and _committed_blocks(backend, key) == 4  # 3.5 MiB in 1 MiB blocks


def _committed_blocks(backend: Backend, key: str) -> int:
    """How many blocks an Azure block blob was committed from (Azure's own account, via its SDK)."""
    committed, uncommitted = backend.extra["container"].get_blob_client(key).get_block_list("all")
    assert not uncommitted
    return len(committed)


def test_failed_stream_leaves_nothing(backend: Backend) -> None:
    store, key = backend.store, backend.key("broken/obj.bin")
    data = payload(backend.large_size, "broken")

    async def main():
        with pytest.raises(Exception):  # noqa: B017 - any error; what matters is what is left behind
            await store.put_stream(key, chunked(data, backend.large_chunk, fail_after=2),
                                   chunk_size=backend.large_chunk, max_concurrency=2)
        with pytest.raises(ObjectNotFound):
            await store.head(key)
        return await collect(store, backend.key("broken"))

    assert run(main()) == []
    if backend.name == "swift":
        conn = backend.extra["server"].connection()
        try:
            assert conn.get_container(f"{backend.extra['container']}_segments")[1] == []
        except Exception as exc:  # never made is fine too
            assert getattr(exc, "http_status", None) == 404
    if backend.name == "webdav":
        assert not [p for p in backend.extra["server"].root.rglob(f"{TEMP_PREFIX}*")]


def test_list_paginates_and_recurses(backend: Backend) -> None:
    store = backend.store
    count = (backend.page_size or 20) + 3
    names = [f"many/{i:05d}.txt" for i in range(count)] + ["many/sub/deeper/leaf.txt"]

    async def main():
        limit = asyncio.Semaphore(32)

        async def put(name):
            async with limit:
                await store.put_bytes(backend.key(name), name.encode())

        await asyncio.gather(*(put(n) for n in names))
        await store.put_bytes(backend.key("many-not/x.txt"), b"x")  # a sibling prefix, not under many/
        return await collect(store, backend.key("many"))

    listed = run(main())
    assert sorted(backend.listed(o.key) for o in listed) == sorted(backend.key(n) for n in names)
    by_key = {backend.listed(o.key): o.facts for o in listed}
    leaf = backend.key("many/sub/deeper/leaf.txt")
    assert by_key[leaf].size == len(b"many/sub/deeper/leaf.txt")
    head = run(store.head(leaf))
    assert by_key[leaf].size == head.size
    if backend.name in ("swift", "webdav", "s3"):
        assert by_key[leaf].etag == head.etag
    if backend.name == "swift":
        assert by_key[leaf] == head  # listing times are rounded up to whole seconds like Last-Modified


def test_delete_and_copy(backend: Backend) -> None:
    store = backend.store
    src, dst, large = backend.key("cp/src.bin"), backend.key("cp/nested/dst.bin"), backend.key("cp/large.bin")
    data = payload(200_000, "copy")
    big = payload(backend.large_size, "big")

    async def main():
        await store.put_bytes(src, data)
        await store.copy(src, dst)
        assert b"".join([c async for c in store.stream(dst, MiB)]) == data
        assert (await store.head(dst)).size == len(data)
        await store.put_stream(large, chunked(big, backend.large_chunk), chunk_size=backend.large_chunk,
                               max_concurrency=2)
        await store.delete(src)
        await store.delete(large)
        await store.delete(src)  # deleting what is gone is fine
        for gone in (src, large):
            with pytest.raises(ObjectNotFound):
                await store.head(gone)
        assert (await store.head(dst)).size == len(data)

    run(main())
    if backend.name == "swift":  # the large object's segments went with it
        conn = backend.extra["server"].connection()
        assert conn.get_container(f"{backend.extra['container']}_segments")[1] == []


def test_not_found_is_typed(backend: Backend) -> None:
    store, key = backend.store, backend.key("nope/missing.bin")

    async def main():
        for call in (lambda: store.head(key), lambda: store.get_range(key, 0, 10),
                     lambda: _drain(store.stream(key, MiB))):
            with pytest.raises(ObjectNotFound) as info:
                await call()
            assert "missing.bin" in str(info.value)

    run(main())


async def _drain(stream: AsyncIterator[bytes]) -> None:
    async for _ in stream:
        pass


def test_wrong_credentials_are_typed_and_secret_free(backend: Backend) -> None:
    if not backend.wrong:
        pytest.skip("local files have no credentials")
    run(backend.store.put_bytes(backend.key("auth/x.bin"), b"x"))

    async def main():
        for store, secret in backend.wrong:
            for call in (lambda s=store: s.head(backend.key("auth/x.bin")),
                         lambda s=store: s.put_bytes(backend.key("auth/y.bin"), b"y")):
                with pytest.raises(AccessDenied) as info:
                    await call()
                message = str(info.value)
                assert secret not in message and secret not in repr(info.value)
                assert "auth/" in message, message

    run(main())


# -- backend-specific behaviour ------------------------------------------------------------------------
def test_swift_token_is_reacquired_on_401(swift_server, swift_container) -> None:
    registry = StoreRegistry([swift_profile(swift_server, swift_container)])
    store = registry.store_for(parse_href(f"swift://{swift_container}/x"))
    assert isinstance(store, SwiftStore)
    run(store.put_bytes("x", b"abc"))
    store._token = "AUTH_tk" + "0" * 32  # an expired token shared by new connections
    while not store._idle.empty():
        store._idle.get_nowait()
    assert run(store.head("x")).size == 3
    assert store._token != "AUTH_tk" + "0" * 32


def test_swift_preauthenticated_token_and_public_read_and_temp_url(swift_server, swift_container) -> None:
    registry = StoreRegistry([StorageProfile(name="pre", url=f"swift://{swift_container}",
                                             storage_url=swift_server.storage_url, token=swift_server.token)])
    store = registry.store_for(parse_href(f"swift://{swift_container}/k"))
    run(store.put_bytes("dir/obj.txt", b"public bytes", content_type="text/plain"))
    url = f"{swift_server.storage_url}/{swift_container}/dir/obj.txt"
    assert httpx.get(url).status_code == 401
    run(store.set_public_read(swift_container, True))
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"public bytes"
    run(store.set_public_read(swift_container, False))
    assert httpx.get(url).status_code == 401

    run(store.set_temp_url_key("temp-url-secret"))
    signed = run(store.temp_url("dir/obj.txt", 60, "GET"))
    assert "temp_url_sig=" in signed and "temp-url-secret" not in signed
    assert httpx.get(signed).content == b"public bytes"
    assert parse_href(signed).href() == f"{swift_server.storage_url}/{swift_container}/dir/obj.txt"


def test_webdav_put_makes_missing_collections(webdav_server) -> None:
    store = WebDavStore(webdav_server.url, username=webdav_server.user, password=webdav_server.password)
    prefix = f"mk-{uuid.uuid4().hex[:6]}"
    run(store.put_bytes(f"{prefix}/a/b/c/d.txt", b"deep"))
    assert (webdav_server.root / prefix / "a" / "b" / "c" / "d.txt").read_bytes() == b"deep"
    run(store.put_bytes(f"{prefix}/a/b/other.txt", b"x"))  # existing parents: MKCOL 405 is fine
    assert not list(webdav_server.root.rglob(f"{TEMP_PREFIX}*"))


def test_missing_credentials_are_config_errors() -> None:
    registry = StoreRegistry([StorageProfile(name="half-swift", url="swift://c", auth_url="http://x/auth/v1.0"),
                              StorageProfile(name="half-dav", url="webdav://h", username="me")])
    for href, names in (("swift://c/k", ("half-swift", "user", "key", "storage_url", "token")),
                        ("webdav://h/k", ("half-dav", "password")),
                        ("swift://other/k", ("swift://other", "auth_url"))):
        with pytest.raises(ConfigError) as info:
            registry.store_for(parse_href(href))
        for name in names:
            assert name in str(info.value), (href, str(info.value))


def test_azure_large_put_is_a_committed_block_list(azure_backend: Backend) -> None:
    """The multipart half of the large-put case, without the checksum metadata Azure refuses for now."""
    store, key = azure_backend.store, azure_backend.key("blocks/big.bin")
    data = payload(azure_backend.large_size, "blocks")

    async def main():
        etag = await store.put_stream(key, chunked(data, MiB), chunk_size=MiB, max_concurrency=2,
                                      content_type="image/tiff")
        facts = await store.head(key)
        assert facts.size == len(data) and same_etag(etag, facts.etag)
        assert b"".join([c async for c in store.stream(key, MiB)]) == data
        assert await store.get_range(key, MiB - 3, MiB + 3) == data[MiB - 3:MiB + 3]  # across a block boundary

    run(main())
    assert _committed_blocks(azure_backend, key) == 4
    properties = azure_backend.extra["container"].get_blob_client(key).get_blob_properties()
    assert properties.content_settings.content_type == "image/tiff"


def test_azure_listing_gives_heads_etag(azure_backend: Backend) -> None:
    """What S3, Swift and WebDAV already do (test_list_paginates_and_recurses): a listing's ETag is HEAD's."""
    store, key = azure_backend.store, azure_backend.key("etag/x.bin")
    run(store.put_bytes(key, b"x"))
    listed = {o.key: o.facts for o in run(collect(store, azure_backend.key("etag")))}
    assert listed[key].etag == run(store.head(key)).etag


def test_azure_profile_needs_its_account(azure_container) -> None:
    """A Planetary Computer profile with neither endpoint nor account name cannot ask for a token: say so."""
    registry = StoreRegistry([StorageProfile(name="pc-no-account", url=f"az://{azure_container}",
                                             credential_provider="planetary_computer")])
    with pytest.raises(ConfigError) as info:
        registry.store_for(parse_href(f"az://{azure_container}/k"))
    assert "pc-no-account" in str(info.value) and "account" in str(info.value)


def test_swift_and_webdav_stores_are_cached(swift_server, webdav_server) -> None:
    registry = StoreRegistry([swift_profile(swift_server, "cache-c"),
                              StorageProfile(name="d", url=webdav_server.href_origin, username="u", password="p")])
    assert registry.store_for(parse_href("swift://cache-c/a")) is registry.store_for(parse_href("swift://cache-c/b"))
    one = registry.store_for(parse_href(f"{webdav_server.href_origin}/a"))
    assert one is registry.store_for(parse_href(f"{webdav_server.href_origin}/b/c"))
    assert isinstance(one, WebDavStore) and one.origin == webdav_server.url


def test_swift_put_into_missing_container_says_so(swift_server) -> None:
    registry = StoreRegistry([swift_profile(swift_server, "no-such-container")])
    store = registry.store_for(parse_href("swift://no-such-container/k"))
    with pytest.raises(ObjectNotFound) as info:
        run(store.put_bytes("k", b"x"))
    assert "container 'no-such-container'" in str(info.value) and swift_server.key not in str(info.value)
