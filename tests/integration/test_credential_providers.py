"""obstore's credential providers through storage profiles, against real storage servers on 127.0.0.1.

* ``credential_provider: planetary_computer`` on Azurite: a loopback stand-in for the Planetary Computer's SAS
  token API (``GET {credentials_url}/{account}/{container}`` -> ``{"msft:expiry", "token"}``) mints REAL
  container SAS tokens for Azurite with azure-storage-blob and the emulator's key, read + list only like the
  Planetary Computer's; Azurite checks their signature, permissions and expiry.
* ``credential_provider: earthdata`` on SeaweedFS: a loopback stand-in for a NASA DAAC's ``s3credentials``
  endpoint (and Earthdata Login's ``/oauth/authorize`` for the username/password flow) hands out the real
  SeaweedFS test keys.

The token endpoints stand in for Microsoft's and NASA's services; the storage servers and obstore's providers
are the real ones. obstore asks a provider again when the credential it holds expires within 5 minutes (and
more than ~0.1 s after its last request): credentials valid for an hour are fetched once, short-lived ones
again on the next request after they expire.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow.parquet as pq
import pytest

from devservers.process import serve_http
from packager.errors import AccessDenied, ObjectNotFound
from packager.locations import parse_href
from packager.lock import build_lock
from packager.profiles import StorageProfile
from packager.stores import StoreRegistry

pytestmark = pytest.mark.integration

OBJECTS = {"a.bin": 1500, "dir/b.bin": 300_000, "dir/c.bin": 0}
SAS_PATH = "/api/sas/v1/token"
HOUR = timedelta(hours=1)


def pattern(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def items_for(hrefs: dict[str, str]) -> list[dict]:
    return [{"type": "Feature", "stac_version": "1.0.0", "id": name.replace("/", "-"), "collection": "coll",
             "geometry": None, "properties": {}, "links": [], "assets": {"data": {"href": href}}}
            for name, href in hrefs.items()]


def run(coro):
    return asyncio.run(coro)


def assert_secret_free(exc: BaseException, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(exc) and secret not in repr(exc), f"{secret[:6]}... leaked: {exc}"


@dataclass
class Endpoint:
    """State of a loopback credential endpoint: what it answers, and every request it got."""

    status: int = 200
    ttl: timedelta = HOUR
    requests: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # what it handed out (SAS tokens / secret keys)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(path.startswith(prefix) for path in self.requests)


class JsonHandler(BaseHTTPRequestHandler):
    """Quiet handler with small helpers; subclasses set ``endpoint`` and implement ``do_GET``."""

    endpoint: Endpoint

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        pass

    def record(self) -> None:
        with self.endpoint.lock:
            self.endpoint.requests.append(self.path)

    def answer(self, status: int, body: dict | None = None, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body if body is not None else {"message": f"HTTP {status}"}).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


# -- Planetary Computer on Azurite ------------------------------------------------------------------------
@pytest.fixture
def sas_api(azurite_server) -> Iterator[tuple[str, Endpoint]]:
    """(base URL of the token API, its state): ``GET {base}/{account}/{container}`` -> a real container SAS."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    endpoint = Endpoint()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            self.record()
            parts = urlsplit(self.path).path.removeprefix(SAS_PATH).strip("/").split("/")
            if self.endpoint.status != 200 or len(parts) != 2 or parts[0] != azurite_server.account_name:
                self.answer(self.endpoint.status if self.endpoint.status != 200 else 404)
                return
            now = datetime.now(UTC).replace(microsecond=0)
            expiry = now + self.endpoint.ttl
            token = generate_container_sas(azurite_server.account_name, parts[1],
                                           account_key=azurite_server.account_key,
                                           permission=ContainerSasPermissions(read=True, list=True),
                                           start=now - timedelta(minutes=5), expiry=expiry)
            with self.endpoint.lock:
                self.endpoint.issued.append(token)
            self.answer(200, {"msft:expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token})

    Handler.endpoint = endpoint
    with serve_http(Handler, poll_interval=0.05) as url:
        yield url + SAS_PATH, endpoint


@pytest.fixture
def pc_world(azurite_server, azure_container, azure_blob_service, sas_api):
    """Blobs put with the account key (SDK), and a registry reading them with SAS tokens from the token API."""
    base_url, endpoint = sas_api
    client = azure_blob_service.get_container_client(azure_container)
    expected = {}
    for name, size in OBJECTS.items():
        expected[name] = pattern(size, name)
        client.upload_blob(name, expected[name])
    profile = StorageProfile(name="pc", url=f"az://{azure_container}", endpoint=azurite_server.blob_endpoint,
                             credential_provider="planetary_computer", credentials_url=base_url, max_retries=0)
    return StoreRegistry([profile]), azure_container, expected, endpoint


def test_planetary_computer_sas_locks_and_reads(pc_world, azurite_server, tmp_path) -> None:
    registry, container, expected, endpoint = pc_world
    blob_url = f"{azurite_server.blob_endpoint}/{container}/a.bin"
    assert httpx.get(blob_url).status_code in (403, 404)  # without a SAS Azurite refuses: the token is what works

    hrefs = {name: f"az://{container}/{name}" for name in expected}
    summary = build_lock(items_for(hrefs), registry, tmp_path / "lock.parquet", checksum=True)
    assert not summary.failures, summary.failures
    rows = {r["href"]: r for r in pq.read_table(tmp_path / "lock.parquet").to_pylist()}
    for name, data in expected.items():
        assert rows[hrefs[name]]["size_bytes"] == len(data)
        assert rows[hrefs[name]]["checksum"] == "1220" + hashlib.sha256(data).hexdigest()
    store = registry.store_for(parse_href(hrefs["dir/b.bin"]))
    assert run(store.get_range("dir/b.bin", 10, 70_000)) == expected["dir/b.bin"][10:70_000]
    assert sorted(o.key for o in run(_collect(store, "dir"))) == ["dir/b.bin", "dir/c.bin"]

    # one token for every request: it is valid for an hour, and was asked for this account and container
    assert endpoint.requests == [f"{SAS_PATH}/{azurite_server.account_name}/{container}"]
    assert httpx.get(f"{blob_url}?{endpoint.issued[0]}").content == expected["a.bin"]  # a real Azurite SAS
    with pytest.raises(AccessDenied) as info:  # read + list only, like the Planetary Computer's tokens
        run(store.put_bytes("new.bin", b"x"))
    assert_secret_free(info.value, endpoint.issued[0].split("sig=")[1], azurite_server.account_key)


async def _collect(store, prefix: str) -> list:
    return [o async for o in store.list(prefix)]


def test_planetary_computer_token_is_requested_again_when_it_expires(pc_world, azurite_server) -> None:
    registry, container, expected, endpoint = pc_world
    endpoint.ttl = timedelta(seconds=2)
    store = registry.store_for(parse_href(f"az://{container}/a.bin"))
    assert run(store.head("a.bin")).size == len(expected["a.bin"])
    assert endpoint.count() == 1
    time.sleep(3.2)  # past the token's expiry ('se'), which Azurite enforces:
    first = endpoint.issued[0]
    assert httpx.get(f"{azurite_server.blob_endpoint}/{container}/a.bin?{first}").status_code == 403
    assert run(store.get_range("a.bin", 0, 100)) == expected["a.bin"][:100]
    assert endpoint.count() == 2 and endpoint.issued[1] != first


@pytest.mark.parametrize("status", [403, 500])
def test_planetary_computer_refusal_is_typed_and_names_the_profile(pc_world, sas_api, azurite_server, tmp_path,
                                                                   status: int) -> None:
    registry, container, _, endpoint = pc_world
    endpoint.status = status
    store = registry.store_for(parse_href(f"az://{container}/a.bin"))
    started = time.monotonic()
    with pytest.raises(AccessDenied) as info:
        run(store.head("a.bin"))
    message = str(info.value)
    assert "storage profile 'pc'" in message and f"answered HTTP {status}" in message, message
    assert f"{container}/a.bin" in message and f"at {urlsplit(sas_api[0]).netloc}" in message
    assert_secret_free(info.value, azurite_server.account_key)
    # a 500 is asked twice more, quickly (not obstore's default 10 retries with minutes of backoff)
    assert endpoint.count() == (3 if status == 500 else 1)
    assert time.monotonic() - started < 10

    summary = build_lock(items_for({"a.bin": f"az://{container}/a.bin"}), registry, tmp_path / "l.parquet")
    assert len(summary.failures) == 1 and "storage profile 'pc'" in summary.failures[0].error


@pytest.mark.parametrize(("href", "fields", "account"), [
    ("az://cont-a/k", {"endpoint": "https://acct1.blob.core.windows.net"}, "acct1"),
    ("abfs://cont-a@acct2.dfs.core.windows.net/k", {}, "acct2"),
    ("az://cont-a/k", {"options": {"account_name": "acct3"}}, "acct3"),
])
def test_planetary_computer_is_asked_for_the_profiles_account(sas_api, href: str, fields: dict,
                                                             account: str) -> None:
    """The account comes from the profile's endpoint, an abfs:// href's host, or options.account_name."""
    base_url, endpoint = sas_api
    endpoint.status = 403  # refuse: nothing reaches the (unreachable) Azure account
    registry = StoreRegistry([StorageProfile(name="pc", url="az://cont-a", credential_provider="planetary_computer",
                                             credentials_url=base_url, max_retries=0, **fields)])
    with pytest.raises(AccessDenied):
        run(registry.store_for(parse_href(href)).head("k"))
    assert endpoint.requests == [f"{SAS_PATH}/{account}/cont-a"]


# -- NASA Earthdata on SeaweedFS ------------------------------------------------------------------------------
EARTHDATA_TOKEN = "edl-token-" + "5f" * 16
EARTHDATA_USER, EARTHDATA_PASSWORD = "edl-user", "edl-password-" + "a7" * 8


@dataclass
class Daac(Endpoint):
    """A DAAC's s3credentials endpoint: which S3 secret it hands out (``secret``), and Earthdata Login."""

    secret: str = ""
    code: str = "edl-code-1"
    body: bytes | None = None  # answer this instead of the credentials


@pytest.fixture
def daac(s3_endpoint) -> Iterator[tuple[str, Daac]]:
    """(base URL, state). ``/s3credentials`` answers a valid bearer token with S3 credentials; without one it
    redirects to ``/oauth/authorize``, which takes basic auth and redirects back with a code, as NASA's do."""
    state = Daac(secret=s3_endpoint.secret_access_key)

    class Handler(JsonHandler):
        endpoint = state

        def do_GET(self) -> None:
            self.record()
            url = urlsplit(self.path)
            if url.path == "/oauth/authorize":
                self.authorize()
            elif url.path == "/s3credentials":
                self.credentials(parse_qs(url.query).get("code", [None])[0])
            else:
                self.answer(404)

        def authorize(self) -> None:
            basic = "Basic " + base64.b64encode(f"{EARTHDATA_USER}:{EARTHDATA_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != basic:
                self.answer(401)
            else:
                self.answer(302, headers={"Location": f"/s3credentials?code={state.code}"})

        def credentials(self, code: str | None) -> None:
            bearer = self.headers.get("Authorization") == f"Bearer {EARTHDATA_TOKEN}"
            if state.status != 200:
                self.answer(state.status)
            elif not bearer and code != state.code:  # not logged in: off to Earthdata Login
                self.answer(307, headers={"Location": f"http://127.0.0.1:{self.server.server_address[1]}"
                                                      "/oauth/authorize?response_type=code"})
            elif state.body is not None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)
            else:
                expiration = datetime.now(UTC).replace(microsecond=0) + state.ttl
                with state.lock:
                    state.issued.append(state.secret)
                # SeaweedFS's identities are static keys: it refuses any session token, so it gets none
                self.answer(200, {"accessKeyId": s3_endpoint.access_key_id, "secretAccessKey": state.secret,
                                  "sessionToken": "", "expiration": expiration.isoformat(sep=" ")})

    with serve_http(Handler, poll_interval=0.05) as url:
        yield url, state


@pytest.fixture
def earthdata_world(s3_endpoint, s3_client, s3_bucket, daac, monkeypatch):
    """Objects put with boto3, and a registry reading them with keys from the DAAC endpoint."""
    base_url, state = daac
    for name in ("EARTHDATA_TOKEN", "EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/netrc")  # never a real ~/.netrc
    monkeypatch.setenv("EARTHDATA_HOST", "127.0.0.1")  # the host the provider may send the password to
    expected = {}
    for name, size in OBJECTS.items():
        expected[name] = pattern(size, name)
        s3_client.put_object(Bucket=s3_bucket, Key=name, Body=expected[name])
    profile = StorageProfile(name="earthdata", url=f"s3://{s3_bucket}", endpoint=s3_endpoint.endpoint,
                             region=s3_endpoint.region, credential_provider="earthdata",
                             credentials_url=f"{base_url}/s3credentials", max_retries=0)
    return StoreRegistry([profile]), s3_bucket, expected, state


def _lock_all(registry, bucket: str, expected: dict[str, bytes], path) -> None:
    hrefs = {name: f"s3://{bucket}/{name}" for name in expected}
    summary = build_lock(items_for(hrefs), registry, path, checksum=True)
    assert not summary.failures, summary.failures
    checksums = {r["key"]: r["checksum"] for r in pq.read_table(path).to_pylist()}
    assert checksums == {name: "1220" + hashlib.sha256(data).hexdigest() for name, data in expected.items()}


def test_earthdata_token_reads_from_seaweedfs(earthdata_world, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("EARTHDATA_TOKEN", EARTHDATA_TOKEN)
    registry, bucket, expected, state = earthdata_world
    _lock_all(registry, bucket, expected, tmp_path / "lock.parquet")
    assert state.requests == ["/s3credentials"]  # valid for an hour: asked once for every read


def test_earthdata_login_with_username_and_password(earthdata_world, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("EARTHDATA_USERNAME", EARTHDATA_USER)
    monkeypatch.setenv("EARTHDATA_PASSWORD", EARTHDATA_PASSWORD)
    registry, bucket, expected, state = earthdata_world
    _lock_all(registry, bucket, expected, tmp_path / "lock.parquet")
    assert [urlsplit(p).path for p in state.requests] == ["/s3credentials", "/oauth/authorize", "/s3credentials"]


def test_earthdata_credentials_are_requested_again_after_expiry(earthdata_world, s3_endpoint, monkeypatch) -> None:
    """The new credentials are really used: once the endpoint hands out a wrong secret, reads fail, and
    succeed again when it hands out the right one."""
    monkeypatch.setenv("EARTHDATA_TOKEN", EARTHDATA_TOKEN)
    registry, bucket, expected, state = earthdata_world
    state.ttl = timedelta(seconds=1)
    store = registry.store_for(parse_href(f"s3://{bucket}/a.bin"))
    assert run(store.get_range("a.bin", 0, 10)) == expected["a.bin"][:10]
    assert state.count() == 1

    state.secret = "rotated-" + "0" * 32
    time.sleep(1.5)
    with pytest.raises(AccessDenied) as info:
        run(store.head("a.bin"))
    assert state.count() == 2
    assert_secret_free(info.value, state.secret, s3_endpoint.secret_access_key, EARTHDATA_TOKEN)

    state.secret = s3_endpoint.secret_access_key
    time.sleep(1.5)
    assert run(store.head("a.bin")).size == len(expected["a.bin"])
    assert state.count() == 3
    with pytest.raises(ObjectNotFound):
        run(store.head("missing.bin"))


@pytest.mark.parametrize(("login", "status"), [("token", 403), ("token", 500), ("wrong-token", 200),
                                               ("wrong-password", 200)])
def test_earthdata_refusal_is_typed_and_secret_free(earthdata_world, s3_endpoint, monkeypatch, tmp_path,
                                                    login: str, status: int) -> None:
    if login == "wrong-password":
        monkeypatch.setenv("EARTHDATA_USERNAME", EARTHDATA_USER)
        monkeypatch.setenv("EARTHDATA_PASSWORD", "not-" + EARTHDATA_PASSWORD)
    else:
        monkeypatch.setenv("EARTHDATA_TOKEN", EARTHDATA_TOKEN if login == "token" else "not-" + EARTHDATA_TOKEN)
    registry, bucket, _, state = earthdata_world
    state.status = status
    store = registry.store_for(parse_href(f"s3://{bucket}/a.bin"))
    with pytest.raises(AccessDenied) as info:
        run(store.head("a.bin"))
    message = str(info.value)
    refused = {"token": status, "wrong-token": 401, "wrong-password": 401}[login]  # a redirect back means 401
    assert "storage profile 'earthdata'" in message and f"answered HTTP {refused}" in message, message
    assert f"{bucket}/a.bin" in message and "Earthdata s3credentials endpoint at 127.0.0.1:" in message
    assert_secret_free(info.value, EARTHDATA_TOKEN, EARTHDATA_PASSWORD, s3_endpoint.secret_access_key)
    assert not state.issued

    summary = build_lock(items_for({"a.bin": f"s3://{bucket}/a.bin"}), registry, tmp_path / "l.parquet")
    assert len(summary.failures) == 1 and "storage profile 'earthdata'" in summary.failures[0].error
    assert EARTHDATA_TOKEN not in summary.failures[0].error and EARTHDATA_PASSWORD not in summary.failures[0].error


@pytest.mark.parametrize("answer", ["not json", "json without the keys", "closed port"])
def test_earthdata_unusable_answer_is_typed_and_quotes_nothing(earthdata_world, s3_endpoint, monkeypatch,
                                                               answer: str) -> None:
    """An endpoint that answers garbage (which may hold a secret) or cannot be reached: typed, nothing quoted."""
    monkeypatch.setenv("EARTHDATA_TOKEN", EARTHDATA_TOKEN)
    registry, bucket, _, state = earthdata_world
    leaked = "secret-in-body-" + "c3" * 8
    state.body = {"not json": f"<html>{leaked}</html>".encode(),
                  "json without the keys": json.dumps({"accessKeyId": leaked}).encode()}.get(answer)
    if answer == "closed port":
        with serve_http(JsonHandler) as gone:
            pass  # a port that was just ours and is closed now
        profile = registry.profiles[0].model_copy(update={"credentials_url": f"{gone}/s3credentials"})
        registry = StoreRegistry([profile])
    started = time.monotonic()
    with pytest.raises(AccessDenied) as info:
        run(registry.store_for(parse_href(f"s3://{bucket}/a.bin")).head("a.bin"))
    expected = "could not be reached (ConnectionError)" if answer == "closed port" else \
        "did not answer with the JSON credentials expected"
    assert "storage profile 'earthdata'" in str(info.value) and expected in str(info.value), str(info.value)
    assert_secret_free(info.value, leaked, EARTHDATA_TOKEN, s3_endpoint.secret_access_key)
    assert time.monotonic() - started < 10
