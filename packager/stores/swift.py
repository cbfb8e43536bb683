"""OpenStack Swift through python-swiftclient, behind :class:`packager.stores.base.Store`.

One :class:`SwiftStore` serves one container. python-swiftclient is blocking, so every call runs in a
worker thread; the caller's concurrency bounds how many are in flight. Reads and writes use separate
thread pools: a streaming upload holds a write thread while it waits for bytes that a read (or the
hashing tap) produces, so sharing one pool could deadlock when every thread waits for a reader.

Authentication, as the ``swift`` CLI spells it:

* pre-authenticated: ``storage_url`` + ``token`` (``OS_STORAGE_URL`` / ``OS_AUTH_TOKEN``), or
* TempAuth / v1.0: ``auth_url`` + ``user`` + ``key`` (``ST_AUTH`` / ``ST_USER`` / ``ST_KEY``), or
* Keystone v3 (``auth_version: 3``): ``auth_url`` + ``user`` + ``key`` (the password) + ``project_name`` or
  ``project_id`` (+ user/project domains, default ``default``; ``region_name``; ``interface``), the
  ``OS_*`` variables of the ``openstack`` CLI as fallbacks (:func:`packager.credentials.swift_env_fallback`).
  The token and the storage URL (the catalog's ``object-store`` endpoint) come from one keystoneauth1
  session per store (:class:`KeystoneAuth`).

Either way the token is acquired once, shared by the store's connections, and re-acquired when the server
answers 401 (``token_acquisitions`` counts the tokens fetched, ``request_retries`` the requests sent again).

Uploads: an object that fits in one buffered chunk is one PUT. A longer stream is written as segments
of ``segment_size`` bytes into ``<container>_segments``, each segment one streamed PUT fed by a bounded
iterator (one chunk in flight); a stream that fits into one segment is then promoted to the final
name by a server-side COPY, a longer one becomes a **static large object** whose manifest is PUT last.
Either way the object appears under its name only when complete; on failure the uploaded segments
are deleted. The content checksum travels as ``X-Object-Meta-File-Checksum``.

Errors become the engine's typed errors, naming the ``swift://container/key`` href and never the token
or key; a failed Keystone authentication names the auth URL, user, project and what to check.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import json
import math
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from packager.errors import (
    AccessDenied,
    ConfigError,
    ObjectNotFound,
    PackagerError,
    StoreError,
    TransientStoreError,
)
from packager.stores.base import ListedObject, ObjectFacts, parse_http_date, short_read

T = TypeVar("T")
MiB = 1 << 20

#: user-metadata name of the content checksum, as the obstore backend names it
CHECKSUM_METADATA = "file-checksum"
META_PREFIX = "x-object-meta-"
DEFAULT_SEGMENT_SIZE = 512 * MiB
#: Swift's container listing limit is 10,000; 1,000 keeps each page small
DEFAULT_PAGE_SIZE = 1000
#: seconds a segment upload waits for the next chunk before giving up (the producer died or stalled)
FEED_TIMEOUT = 300.0


def parse_duration(value: str | float | int | None, default: float = 120.0) -> float:
    """'120s', '2m', '500ms', '1h' or a number of seconds -> seconds."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


class _Scrubber:
    """Removes secrets from any text that may end up in a message."""

    def __init__(self, secrets: Callable[[], list[str | None]]) -> None:
        self._secrets = secrets

    def __call__(self, text: str) -> str:
        for secret in self._secrets():
            if secret and len(secret) >= 3:
                text = text.replace(secret, "***")
        return text


def translate_swift_error(exc: BaseException, href: str, scrub: Callable[[str], str] = str,
                          auth_hint: str | None = None) -> PackagerError:
    """A swiftclient/requests exception as a typed error naming ``href`` (never a token or key).

    The engine's own errors (a Keystone authentication failure translated where it happened, a
    :class:`ConfigError` for a catalog without the store's endpoint) pass through unchanged."""
    from swiftclient.exceptions import ClientException

    if isinstance(exc, PackagerError):
        return exc
    if isinstance(exc, ClientException):
        status = exc.http_status
        reason = exc.http_reason or ""
        what = scrub(str(exc.msg or "request").split(":")[0])  # 'Object GET failed', never the URL/token
        detail = f"{what}: HTTP {status} {reason}".strip() if status else scrub(str(exc.msg or exc))[:200]
        if status == 404:
            return ObjectNotFound(f"{href}: object not found ({detail})", href=href)
        if status in (401, 403):
            return AccessDenied(
                f"{href}: access denied ({detail}); "
                + (auth_hint or "check the storage profile's Swift credentials (auth_url + user + key, or "
                   "storage_url + token) for this container"), href=href)
        if status is None or status in (408, 429, 498, 499) or status >= 500:
            return TransientStoreError(f"{href}: {detail}", href=href)
        return StoreError(f"{href}: {detail}", href=href)
    if isinstance(exc, (TimeoutError, ConnectionError, OSError)) or _is_requests_error(exc) \
            or _is_broken_response(exc):
        return TransientStoreError(f"{href}: {type(exc).__name__}: {scrub(str(exc))[:200]}", href=href)
    return StoreError(f"{href}: {type(exc).__name__}: {scrub(str(exc))[:200]}", href=href)


def _is_requests_error(exc: BaseException) -> bool:
    try:
        from requests.exceptions import RequestException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, RequestException)


def _is_broken_response(exc: BaseException) -> bool:
    """A response cut short or reset while its body was read: urllib3's ``ProtocolError`` ("Connection
    broken: IncompleteRead" / "ConnectionResetError") or http.client's ``IncompleteRead``. swiftclient
    reads bodies through the raw urllib3 response, so these reach us unwrapped by requests."""
    import http.client

    from urllib3.exceptions import HTTPError as Urllib3Error

    return isinstance(exc, (Urllib3Error, http.client.HTTPException))


def _counting_connection_class() -> type:
    """swiftclient's ``Connection`` that also retries broken responses and counts its retries.

    swiftclient retries a request on socket and requests errors, 5xx and 408/499, but a body that breaks
    off while it is read (urllib3 ``ProtocolError``) escapes its retry loop. Here such an error becomes a
    ``requests.ConnectionError`` inside the loop, so it is retried like a reset connection (a streamed
    PUT body cannot be replayed: swiftclient then gives up, and the caller's row retry takes over). A
    ``bytes`` body is sent as a rewindable ``BytesIO``, so it can be sent again too (unless the write is
    conditional). Every attempt after the first of a call is added to the store's ``request_retries``.
    """
    global _COUNTING_CONNECTION
    if _COUNTING_CONNECTION is not None:
        return _COUNTING_CONNECTION
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from swiftclient.client import Connection

    class CountingConnection(Connection):
        on_retries: Callable[[int], None] | None = None
        #: called for each token a TempAuth ``get_auth`` fetched
        on_token: Callable[[], None] | None = None
        #: Keystone: turns an authentication failure (None: no storage URL in the catalog) into a typed error
        auth_error: Callable[[BaseException | None], PackagerError] | None = None

        def _retry(self, reset_func, func, *args, **kwargs):  # noqa: ANN001, ANN202 - swiftclient's signature
            def call(*a: Any, **kw: Any) -> Any:
                try:
                    return func(*a, **kw)
                except Exception as exc:
                    if _is_broken_response(exc):
                        raise RequestsConnectionError(f"{type(exc).__name__}: {exc}") from exc
                    raise

            call.__name__ = getattr(func, "__name__", "call")
            resumed = kwargs.get("attempts", 0)
            try:
                return super()._retry(reset_func, call, *args, **kwargs)
            finally:
                # a fresh call's first attempt is not a retry; a resumed download (attempts given) is one
                retries = self.attempts - resumed - (0 if resumed else 1)
                if retries > 0 and self.on_retries is not None:
                    self.on_retries(retries)

        def get_auth(self):  # noqa: ANN202 - swiftclient's signature
            # a Keystone failure becomes a typed error here, where it is still known to be about auth (to
            # swiftclient it is an untyped exception); TempAuth keeps swiftclient's own 401 handling
            try:
                url, token = super().get_auth()
            except Exception as exc:
                if self.auth_error is None:
                    raise
                raise self.auth_error(exc) from None
            if not url and self.auth_error is not None:
                raise self.auth_error(None)
            if self.on_token is not None and self.session is None:  # Keystone counts in its plugin
                self.on_token()
            return url, token

        def put_object(self, container, obj, contents, content_length=None, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            # bytes cannot be rewound, so swiftclient refuses to send them again ("no ability to reset
            # contents for reupload"); a BytesIO of them can be. Not for a conditional write: a repeat after
            # a lost answer fails its own precondition (412) and cannot tell its success from another's.
            conditional = any(h.lower() in ("if-match", "if-none-match") for h in (kwargs.get("headers") or {}))
            if isinstance(contents, (bytes, bytearray)) and contents and not conditional:
                content_length = len(contents) if content_length is None else content_length
                contents = io.BytesIO(contents)
            return super().put_object(container, obj, contents, content_length, *args, **kwargs)

    _COUNTING_CONNECTION = CountingConnection
    return CountingConnection


_COUNTING_CONNECTION: type | None = None

#: Keystone's auth methods live under /v3; swiftclient appends it to a versionless auth URL too
_KEYSTONE_V3_SUFFIX = "/v3"


@dataclass(frozen=True)
class KeystoneAuth:
    """Keystone v3 password authentication of a Swift store, as the ``openstack`` / ``swift`` CLIs spell it.

    ``auth_url`` is the identity endpoint (``https://keystone:5000/v3``; a versionless URL gets ``/v3``).
    Domains default to the ``default`` domain (by id), as python-openstackclient's ``--os-default-domain``.
    The object-store endpoint is taken from the token's catalog: ``interface`` (public) in ``region_name``.
    """

    auth_url: str
    username: str
    password: str = field(repr=False)
    project_name: str | None = None
    project_id: str | None = None
    user_domain_name: str | None = None
    user_domain_id: str | None = None
    project_domain_name: str | None = None
    project_domain_id: str | None = None
    region_name: str | None = None
    interface: str = "public"

    def __post_init__(self) -> None:
        if not self.auth_url.startswith(("http://", "https://")):
            raise ConfigError(f"Keystone auth_url {self.auth_url!r} is not an http(s) URL")
        last = urlsplit(self.auth_url).path.rstrip("/").rsplit("/", 1)[-1]
        if last in ("v2.0", "v2"):
            raise ConfigError(f"Keystone auth_url {self.auth_url!r} is the identity v2.0 API, which Keystone no "
                              "longer serves: use the v3 endpoint (…/v3) with auth_version 3")
        if not (self.username and self.password):
            raise ConfigError(f"Keystone v3 auth at {self.auth_url} needs a user and a password (key)")
        if not (self.project_name or self.project_id):
            raise ConfigError(f"Keystone v3 auth at {self.auth_url} needs project_name or project_id "
                              "(OS_PROJECT_NAME / OS_PROJECT_ID): Swift accounts belong to projects")
        if self.interface not in ("public", "internal", "admin"):
            raise ConfigError(f"Keystone interface {self.interface!r}: use public, internal or admin")

    @property
    def identity_url(self) -> str:
        """The v3 API root the token is asked from (``auth_url``, with ``/v3`` added when versionless)."""
        url = self.auth_url.rstrip("/")
        last = urlsplit(url).path.rsplit("/", 1)[-1]
        return url if last.startswith("v3") else url + _KEYSTONE_V3_SUFFIX

    def who(self, region: bool = True) -> str:
        """User, project, domains and region, for messages (no secret)."""
        user_domain = self.user_domain_name or self.user_domain_id or "default"
        project_domain = self.project_domain_name or self.project_domain_id or "default"
        project = self.project_name or f"id {self.project_id}"
        return (f"user {self.username!r} (domain {user_domain}), project {project!r} (domain {project_domain})"
                + (f", region {self.region_name!r}" if self.region_name and region else ""))

    def plugin(self, on_token: Callable[[], None] | None = None) -> Any:
        """A keystoneauth1 v3 password plugin; ``on_token`` is called for each token it fetches."""
        from keystoneauth1.identity import v3

        class CountingPassword(v3.Password):
            def get_auth_ref(self, session: Any, **kwargs: Any) -> Any:
                ref = super().get_auth_ref(session, **kwargs)
                if on_token is not None:
                    on_token()
                return ref

        domain_default = None if (self.user_domain_name or self.user_domain_id) else "default"
        project_domain_default = None if (self.project_domain_name or self.project_domain_id) else "default"
        return CountingPassword(
            auth_url=self.identity_url, username=self.username, password=self.password,
            user_domain_name=self.user_domain_name, user_domain_id=self.user_domain_id or domain_default,
            project_name=self.project_name, project_id=self.project_id,
            project_domain_name=self.project_domain_name if self.project_name else None,
            project_domain_id=(self.project_domain_id or project_domain_default) if self.project_name else None)

    def os_options(self) -> dict[str, str]:
        """What swiftclient's ``Connection`` passes to ``session.get_endpoint``."""
        options = {"service_type": "object-store", "endpoint_type": self.interface}
        if self.region_name:
            options["region_name"] = self.region_name
        return options


class _SessionView:
    """What one swiftclient ``Connection`` sees of its store's shared keystoneauth1 session.

    swiftclient answers a 401 with ``session.invalidate()`` and a new ``get_auth()``. The session is shared:
    once one connection has fetched a new token, the others' 401s (for the old token) must adopt it, not
    throw it away and fetch yet another. So the session is invalidated only when its current token is the
    one that was refused; ``True`` is always returned, so the request is retried once with a fresh token.
    """

    _fallback_lock = threading.Lock()

    def __init__(self, session: Any, conn: Any) -> None:
        self._session = session
        self._conn = conn

    def get_endpoint(self, **kwargs: Any) -> str | None:
        return self._session.get_endpoint(**kwargs)

    def get_token(self) -> str:
        return self._session.get_token()

    def invalidate(self) -> bool:
        auth = self._session.auth
        refused = self._conn.token
        # under the plugin's own lock (the one it fetches tokens under), so a token another connection has
        # just fetched is never the one thrown away
        with getattr(auth, "_lock", None) or self._fallback_lock:
            ref = getattr(auth, "auth_ref", None)
            if ref is not None and (refused is None or ref.auth_token == refused):
                auth.invalidate()
        return True


def keystone_auth_error(exc: BaseException | None, auth: KeystoneAuth, href: str,
                        scrub: Callable[[str], str] = str) -> PackagerError:
    """A failure of Keystone authentication (``None``: no object-store endpoint in the catalog) as a typed
    error naming the auth URL, the user and project, and what to check; never the password or a token."""
    where = f"{href}: Keystone v3 at {auth.auth_url}"
    try:
        from keystoneauth1 import exceptions as ks
    except ImportError:  # pragma: no cover - a dependency of the project
        return StoreError(f"{where}: {type(exc).__name__}: {scrub(str(exc))[:200]}", href=href)
    if exc is None or (isinstance(exc, ks.EndpointNotFound) and not isinstance(exc, ks.EmptyCatalog)):
        return ConfigError(
            f"{where} gave {auth.who(region=False)} a token, but its catalog has no object-store endpoint for "
            f"interface {auth.interface!r}" + (f" in region {auth.region_name!r}" if auth.region_name else "")
            + ": check region_name (OS_REGION_NAME) and interface, or ask the cloud's admin to register Swift "
            "('openstack catalog list' shows what there is)")
    if isinstance(exc, ks.EmptyCatalog):
        return ConfigError(
            f"{where} gave {auth.who()} a token without an object-store endpoint in its catalog (is Swift "
            "registered, and does the user have a role on the project?): check project_name/project_id and "
            "region_name")
    status = getattr(exc, "http_status", None)
    if isinstance(exc, (ks.Unauthorized, ks.Forbidden)):
        return AccessDenied(
            f"{where} refused to authenticate {auth.who()} (HTTP {status}): check the user name, the password "
            "(key), project_name/project_id and the user and project domains of the storage profile or "
            "keystore key (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_USER_DOMAIN_NAME, "
            "OS_PROJECT_DOMAIN_NAME); the user needs a role on the project", href=href)
    if isinstance(exc, ks.NotFound):
        return ConfigError(
            f"{where}: {auth.identity_url}/auth/tokens answered HTTP 404: auth_url must be Keystone's identity "
            "v3 endpoint, e.g. https://keystone.example:5000/v3 (OS_AUTH_URL)")
    if isinstance(exc, ks.BadRequest):
        return ConfigError(
            f"{where} rejected the authentication request for {auth.who()} (HTTP 400): check the domains "
            "(user_domain_name/_id, project_domain_name/_id) and that project_name or project_id is right")
    if isinstance(exc, ks.SSLError):
        return StoreError(f"{where}: TLS failed ({type(exc).__name__}): check the certificate of {auth.auth_url}",
                          href=href)
    if isinstance(exc, (ks.ConnectionError, ks.RetriableConnectionFailure, ks.DiscoveryFailure)):
        return TransientStoreError(
            f"{where} cannot be reached ({type(exc).__name__}): check auth_url (OS_AUTH_URL) and that the "
            "identity service is up", href=href)
    if isinstance(exc, ks.HttpError) and (status is None or status >= 500 or status in (408, 429)):
        return TransientStoreError(f"{where} answered HTTP {status} while authenticating {auth.who()}",
                                   href=href)
    if isinstance(exc, ks.ClientException):
        return ConfigError(f"{where}: authentication of {auth.who()} failed ({type(exc).__name__}: "
                           f"{scrub(str(exc))[:200]})")
    return StoreError(f"{where}: authentication failed: {type(exc).__name__}: {scrub(str(exc))[:200]}", href=href)


def _listing_date(value: str | None) -> datetime | None:
    """Listing times are ISO without a zone, sub-second; HEAD's Last-Modified is that time rounded *up* to
    whole seconds. Round the same way so a listing and a HEAD report the same facts."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None
    whole = parsed.replace(microsecond=0)
    return whole + timedelta(seconds=1) if parsed.microsecond else whole


def facts_from_headers(headers: dict[str, str]) -> ObjectFacts:
    return ObjectFacts(size=int(headers.get("content-length") or 0), etag=headers.get("etag"),
                       last_modified=parse_http_date(headers.get("last-modified")),
                       version=headers.get("x-object-version-id"))


class _Feeder:
    """Hands the bytes of an async iterator to worker threads, one chunk at a time, split at any size.

    The event loop produces chunks; a thread uploading a segment pulls them with
    :func:`asyncio.run_coroutine_threadsafe`, so at most one chunk is in flight per upload.
    """

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._it = chunks.__aiter__()
        self._loop = loop
        self._pending: deque[memoryview] = deque()
        self.buffered = 0
        self.done = False
        self.cancelled = False
        self.source_error: BaseException | None = None

    async def _anext(self) -> bytes | None:
        try:
            while True:
                chunk = await self._it.__anext__()
                if chunk:
                    return bytes(chunk) if not isinstance(chunk, bytes) else chunk
        except StopAsyncIteration:
            return None
        except BaseException as exc:
            self.source_error = exc
            raise

    def _push(self, chunk: bytes | None) -> None:
        if chunk is None:
            self.done = True
        else:
            self._pending.append(memoryview(chunk))
            self.buffered += len(chunk)

    async def fill(self, limit: int) -> None:
        """On the loop: buffer chunks until more than ``limit`` bytes are held or the stream ends."""
        while not self.done and self.buffered <= limit:
            self._push(await self._anext())

    def _pull(self) -> None:
        """In a worker thread: fetch the next chunk from the loop."""
        if self.cancelled:
            raise RuntimeError("upload cancelled")
        future = asyncio.run_coroutine_threadsafe(self._anext(), self._loop)
        deadline = time.monotonic() + FEED_TIMEOUT
        while True:  # wake up now and then: the caller may have been cancelled, its loop closed
            try:
                self._push(future.result(timeout=1.0))
                return
            except concurrent.futures.TimeoutError:
                if self.cancelled or self._loop.is_closed() or time.monotonic() > deadline:
                    future.cancel()
                    raise TimeoutError("the upload's source stopped producing bytes") from None

    def take(self, limit: int, *, in_thread: bool = True) -> bytes:
        """Up to ``limit`` bytes (b'' at the end of the stream)."""
        while not self._pending:
            if self.done or not in_thread:
                return b""
            self._pull()
        head = self._pending[0]
        if len(head) <= limit:
            self._pending.popleft()
            piece = head
        else:
            piece, self._pending[0] = head[:limit], head[limit:]
        self.buffered -= len(piece)
        return bytes(piece)

    def has_more(self) -> bool:
        """In a worker thread: whether any byte is left (may fetch one chunk)."""
        while not self._pending and not self.done:
            self._pull()
        return bool(self._pending)

    def drain_buffered(self) -> bytes:
        data = b"".join(bytes(p) for p in self._pending)
        self._pending.clear()
        self.buffered = 0
        return data

    def segment(self, limit: int, counter: list[int]) -> Iterator[bytes]:
        """In a worker thread: a body of at most ``limit`` bytes; ``counter[0]`` counts what was sent."""
        while counter[0] < limit:
            piece = self.take(min(limit - counter[0], 4 * MiB))
            if not piece:
                return
            counter[0] += len(piece)
            yield piece


class SwiftStore:
    """One Swift container; keys are object names. Thread-safe; reused for every object."""

    keeps_metadata = True

    def __init__(self, container: str, *, auth_url: str | None = None, user: str | None = None,
                 key: str | None = None, storage_url: str | None = None, token: str | None = None,
                 segment_size: int = DEFAULT_SEGMENT_SIZE, segment_container: str | None = None,
                 timeout: float = 120.0, retries: int = 3, max_workers: int = 32,
                 temp_url_key: str | None = None, insecure: bool = False,
                 keystone: KeystoneAuth | None = None) -> None:
        if not ((storage_url and token) or (auth_url and user and key) or keystone):
            raise ConfigError(f"swift://{container}: give storage_url + token, auth_url + user + key, or Keystone "
                              "v3 settings")
        if segment_size < 1:
            raise ConfigError("segment_size must be at least 1 byte")
        self.container = container
        self.describe = f"swift://{container}"
        self.segment_container = segment_container or f"{container}_segments"
        self.segment_size = segment_size
        self.list_page_size = DEFAULT_PAGE_SIZE
        self._auth_url, self._user, self._key = auth_url, user, key
        self._storage_url, self._token = storage_url, token
        self._timeout, self._retries, self._insecure = timeout, retries, insecure
        self._temp_url_key = temp_url_key
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._auth_lock = threading.Lock()
        self._segments_ready = False
        self._reads = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="swift-read")
        self._writes = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="swift-write")
        self._keystone = keystone
        self._ks_session: Any = None
        self._scrub = _Scrubber(lambda: [self._key, self._token, self._temp_url_key,
                                         keystone.password if keystone else None])
        #: requests swiftclient sent again (after a reset, a broken body, a 5xx, a 401 re-auth) and body
        #: downloads it resumed; the row retries of the engine are counted apart from these
        self.request_retries = 0
        #: tokens fetched from the auth service (TempAuth or Keystone): 1 for a store whose token never
        #: expired or was revoked, however many connections and threads it used
        self.token_acquisitions = 0
        self._count_lock = threading.Lock()
        if keystone is not None:
            self._auth_hint = (f"the Keystone v3 {keystone.who()} (auth_url {keystone.auth_url}) was refused by "
                               "Swift: it needs a role on the project that the proxy's keystoneauth accepts "
                               "(operator_roles, e.g. member), or an ACL on the container")
        else:
            self._auth_hint = None

    # -- plumbing ------------------------------------------------------------------------------
    def _href(self, key: str, container: str | None = None) -> str:
        return f"swift://{container or self.container}/{quote(key, safe='/:@!$&()*+,;=~')}"

    def _count_retries(self, n: int) -> None:
        with self._count_lock:
            self.request_retries += n

    def _count_token(self) -> None:
        with self._count_lock:
            self.token_acquisitions += 1

    def _keystone_session(self) -> Any:
        """The store's keystoneauth1 session, made on first use: it holds the one token of the store."""
        with self._auth_lock:
            if self._ks_session is None:
                from keystoneauth1 import session

                self._ks_session = session.Session(auth=self._keystone.plugin(self._count_token),
                                                   timeout=self._timeout, verify=not self._insecure)
            return self._ks_session

    def _translate(self, exc: BaseException, href: str) -> PackagerError:
        return translate_swift_error(exc, href, self._scrub, self._auth_hint)

    def _new_connection(self) -> Any:
        with self._auth_lock:
            url, token = self._storage_url, self._token
        cls = _counting_connection_class()
        if self._keystone is not None:
            conn = cls(preauthurl=url, preauthtoken=token, os_options=self._keystone.os_options(),
                       retries=self._retries, starting_backoff=0.25, max_backoff=8, timeout=self._timeout,
                       insecure=self._insecure)
            conn.session = _SessionView(self._keystone_session(), conn)
            keystone, describe, scrub = self._keystone, self.describe, self._scrub
            conn.auth_error = lambda exc: keystone_auth_error(exc, keystone, describe, scrub)
        else:
            conn = cls(authurl=self._auth_url, user=self._user, key=self._key, preauthurl=url, preauthtoken=token,
                       retries=self._retries, starting_backoff=0.25, max_backoff=8, timeout=self._timeout,
                       insecure=self._insecure, auth_version="1")
            conn.on_token = self._count_token
        conn.on_retries = self._count_retries
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._new_connection()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if conn.url and conn.token:  # share a token acquired (or re-acquired after a 401)
                with self._auth_lock:
                    self._storage_url, self._token = conn.url, conn.token
            if ok:
                self._idle.put(conn)
            else:
                with contextlib.suppress(Exception):
                    conn.close()

    def _call(self, op: Callable[[Any], T]) -> T:
        with self._connection() as conn:
            return op(conn)

    async def _run(self, op: Callable[[Any], T], href: str, *, write: bool = False) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writes if write else self._reads, self._call, op)
        except Exception as exc:
            raise self._translate(exc, href) from None

    # -- reads ---------------------------------------------------------------------------------
    async def head(self, key: str) -> ObjectFacts:
        headers = await self._run(lambda c: c.head_object(self.container, key), self._href(key))
        return facts_from_headers(headers)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""

        def op(conn: Any) -> bytes:
            _, body = conn.get_object(self.container, key, headers={"Range": f"bytes={start}-{end - 1}"})
            return body

        return await self._run(op, self._href(key))

    async def get_ranges(self, key: str, starts: list[int], ends: list[int]) -> list[bytes]:
        return list(await asyncio.gather(*(self.get_range(key, s, e) for s, e in zip(starts, ends, strict=True))))

    async def stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        href = self._href(key)
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._new_connection()
        body = None
        finished = False
        try:
            try:
                headers, body = await loop.run_in_executor(
                    self._reads, lambda: conn.get_object(self.container, key, resp_chunk_size=chunk_size))
            except Exception as exc:
                raise self._translate(exc, href) from None
            expected = int(headers["content-length"]) if headers.get("content-length", "").isdigit() else None
            read = 0
            while True:
                try:
                    chunk = await loop.run_in_executor(self._reads, _next_or_none, body)
                except Exception as exc:
                    raise self._translate(exc, href) from None
                if chunk is None:
                    if expected is not None and read != expected:  # ended early without an error
                        raise short_read(href, read, expected)
                    finished = True
                    return
                read += len(chunk)
                yield chunk
        finally:
            if conn.url and conn.token:
                with self._auth_lock:
                    self._storage_url, self._token = conn.url, conn.token
            if finished:
                self._idle.put(conn)
            else:  # abandoned or failed half way: drop the connection with its unread response
                with contextlib.suppress(Exception):
                    if body is not None:
                        body.close()
                with contextlib.suppress(Exception):
                    conn.close()

    async def read_metadata(self, key: str) -> dict[str, str]:
        headers = await self._run(lambda c: c.head_object(self.container, key), self._href(key))
        return {k[len(META_PREFIX):].lower(): v for k, v in headers.items() if k.lower().startswith(META_PREFIX)}

    async def set_checksum(self, key: str, checksum: str) -> None:
        """No-op: the checksum is written with the object. A metadata POST would move Last-Modified
        after the lock recorded it (and replaces every other X-Object-Meta-* header)."""

    async def list(self, prefix: str) -> AsyncIterator[ListedObject]:
        """Objects under ``prefix`` as a path (``a/b`` lists ``a/b/...``, not ``a/bc``), like obstore."""
        marker = ""
        href = self._href(prefix)
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        while True:
            page_marker = marker

            def op(conn: Any, page_marker: str = page_marker) -> list[dict]:
                return conn.get_container(self.container, prefix=prefix or None, marker=page_marker or None,
                                          limit=self.list_page_size)[1]

            entries = await self._run(op, href)
            for entry in entries:
                if "subdir" in entry:
                    continue
                yield ListedObject(entry["name"], ObjectFacts(
                    size=int(entry.get("bytes") or 0),
                    etag=entry.get("slo_etag") or entry.get("hash"),  # a large object: HEAD's quoted ETag
                    last_modified=_listing_date(entry.get("last_modified"))))
            if len(entries) < self.list_page_size or not entries:
                return
            marker = entries[-1].get("name") or entries[-1].get("subdir")

    # -- writes --------------------------------------------------------------------------------
    @staticmethod
    def _headers(content_type: str | None, metadata: dict[str, str] | None) -> dict[str, str]:
        headers = {f"X-Object-Meta-{k}": v for k, v in (metadata or {}).items()}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _no_container(self, exc: ObjectNotFound) -> ObjectNotFound:
        return ObjectNotFound(f"{exc}: does the container {self.container!r} exist? Swift stores do not create "
                              "it; make it first (swift post <container>)", href=exc.href)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None,
                        metadata: dict[str, str] | None = None) -> str | None:
        headers = self._headers(content_type, metadata)
        try:
            # a seekable body: swiftclient can resend it after re-authenticating on a 401
            return await self._run(lambda c: c.put_object(self.container, key, io.BytesIO(data),
                                                          content_length=len(data), headers=headers),
                                   self._href(key), write=True)
        except ObjectNotFound as exc:
            raise self._no_container(exc) from None

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, chunk_size: int, max_concurrency: int,
                         content_type: str | None = None, metadata: dict[str, str] | None = None) -> str | None:
        """Whole or not at all: one PUT, a promoted single segment, or an SLO whose manifest is PUT last."""
        href = self._href(key)
        feeder = _Feeder(chunks, asyncio.get_running_loop())
        try:
            await feeder.fill(min(max(chunk_size, 1), self.segment_size))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{href}: reading the source failed: {type(exc).__name__}: {exc}", href=href) from exc
        if feeder.done and feeder.buffered <= self.segment_size:
            return await self.put_bytes(key, feeder.drain_buffered(), content_type=content_type, metadata=metadata)
        headers = self._headers(content_type, metadata)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writes, self._put_segmented, key, feeder, headers)
        except asyncio.CancelledError:
            feeder.cancelled = True
            raise
        except Exception as exc:
            if feeder.source_error is not None:
                source = feeder.source_error
                if isinstance(source, StoreError):
                    raise source from None
                raise StoreError(f"{href}: reading the source failed: {type(source).__name__}: {source}",
                                 href=href) from None
            error = self._translate(exc, href)
            raise (self._no_container(error) if isinstance(error, ObjectNotFound) else error) from None

    def _ensure_segment_container(self) -> None:
        if not self._segments_ready:
            self._call(lambda c: c.put_container(self.segment_container))
            self._segments_ready = True

    def _put_segmented(self, key: str, feeder: _Feeder, headers: dict[str, str]) -> str | None:
        """In a write thread: stream segments, then promote or write the manifest; clean up on failure."""
        self._ensure_segment_container()
        prefix = f"{key}/{time.time():.6f}-{uuid.uuid4().hex[:8]}/"
        uploaded: list[dict[str, Any]] = []
        try:
            while True:
                name = f"{prefix}{len(uploaded):08d}"
                counter = [0]
                uploaded.append({"path": f"/{self.segment_container}/{name}", "name": name})
                etag = self._call(lambda c, name=name, counter=counter: c.put_object(
                    self.segment_container, name, feeder.segment(self.segment_size, counter)))
                uploaded[-1].update(etag=etag, size_bytes=counter[0])
                if counter[0] < self.segment_size or not feeder.has_more():
                    break
            if len(uploaded) == 1:  # fits one segment: a plain object after all
                response: dict[str, Any] = {}
                self._call(lambda c: c.copy_object(self.segment_container, uploaded[0]["name"],
                                                   destination=f"/{self.container}/{key}",
                                                   headers=headers, fresh_metadata=True, response_dict=response))
                self._delete_segments(uploaded)
                return (response.get("headers") or {}).get("etag")
            manifest = json.dumps([{"path": s["path"], "etag": s["etag"], "size_bytes": s["size_bytes"]}
                                   for s in uploaded])
            response = {}
            self._call(lambda c: c.put_object(self.container, key, manifest, headers=headers,
                                              query_string="multipart-manifest=put", response_dict=response))
            return (response.get("headers") or {}).get("etag")
        except BaseException:
            self._delete_segments(uploaded)
            raise

    def _delete_segments(self, segments: list[dict[str, Any]]) -> None:
        for segment in segments:
            with contextlib.suppress(Exception):
                self._call(lambda c, s=segment: c.delete_object(self.segment_container, s["name"]))

    async def delete(self, key: str) -> None:
        """Delete an object; a static large object together with its segments. A missing one is fine."""
        from swiftclient.exceptions import ClientException

        def op(conn: Any) -> None:
            headers = conn.head_object(self.container, key)
            if str(headers.get("x-static-large-object", "")).lower() == "true":
                conn.delete_object(self.container, key, query_string="multipart-manifest=delete")
            else:
                conn.delete_object(self.container, key)

        def tolerant(conn: Any) -> None:
            try:
                op(conn)
            except ClientException as exc:
                if exc.http_status != 404:
                    raise

        await self._run(tolerant, self._href(key), write=True)

    async def copy(self, source_key: str, dest_key: str) -> None:
        """Server-side COPY (a large object is copied whole, as a plain object of up to 5 GiB)."""
        await self._run(lambda c: c.copy_object(self.container, source_key,
                                                destination=f"/{self.container}/{dest_key}"),
                        self._href(dest_key), write=True)

    # -- helpers beyond the Store protocol -----------------------------------------------------
    async def ensure_container(self) -> None:
        await self._run(lambda c: c.put_container(self.container), self.describe, write=True)

    async def set_public_read(self, container: str | None = None, enabled: bool = True) -> None:
        """Allow (or stop) anonymous reads and listings of a container (default: this store's) and of its
        segment container, which anonymous reads of a large object need too."""
        from swiftclient.exceptions import ClientException

        target = container or self.container
        acl = ".r:*,.rlistings" if enabled else ""

        def op(conn: Any) -> None:
            conn.post_container(target, {"X-Container-Read": acl})
            with contextlib.suppress(ClientException):
                conn.post_container(f"{target}_segments", {"X-Container-Read": acl})

        await self._run(op, f"swift://{target}", write=True)

    async def set_temp_url_key(self, secret: str) -> None:
        """Set the account's TempURL key (needs an account admin) and use it for :meth:`temp_url`."""
        await self._run(lambda c: c.post_account({"X-Account-Meta-Temp-URL-Key": secret}), self.describe,
                        write=True)
        self._temp_url_key = secret

    async def storage_url(self) -> str:
        def op(conn: Any) -> str:
            if not conn.url:
                conn.url, conn.token = conn.get_auth()
            return conn.url

        return await self._run(op, self.describe)

    async def temp_url(self, key: str, seconds: int, method: str = "GET") -> str:
        """A TempURL for ``key``, valid ``seconds``; needs the account's temp-url key (account metadata
        ``X-Account-Meta-Temp-URL-Key``, or ``temp_url_key`` given to the store)."""
        from swiftclient.utils import generate_temp_url

        secret = self._temp_url_key
        if not secret:
            headers = await self._run(lambda c: c.head_account(), self.describe)
            secret = headers.get("x-account-meta-temp-url-key")
            if not secret:
                raise ConfigError(f"{self.describe}: the account has no temp-url key: set the account metadata "
                                  "X-Account-Meta-Temp-URL-Key (set_temp_url_key) before asking for a TempURL")
            self._temp_url_key = secret
        url = await self.storage_url()
        parts = urlsplit(url)
        path = f"{parts.path.rstrip('/')}/{quote(self.container)}/{quote(key)}"
        signed = generate_temp_url(path, int(seconds), secret, method.upper())
        return f"{parts.scheme}://{parts.netloc}{signed}"

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=False, cancel_futures=True)
        if self._ks_session is not None:  # its pooled connections to Keystone
            with contextlib.suppress(Exception):
                self._ks_session.session.close()
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                conn.close()


def _next_or_none(body: Any) -> bytes | None:
    return next(body, None)


def build_swift_store(location: Any, profile: Any) -> SwiftStore:
    """A :class:`SwiftStore` for ``location`` (kind ``swift``) from the storage profile that covers it.

    Keystone v3 when the profile says so (``auth_version: 3``, or a project/domain/region_name field), with
    the ``OS_*`` variables as fallbacks of its unset fields (:func:`packager.credentials.swift_env_fallback`).
    """
    from packager.credentials import swift_auth_version, swift_env_fallback

    container = location.container
    if profile is None:
        raise ConfigError(
            f"no storage profile covers swift://{container}: add one with url 'swift://{container}' and either "
            "auth_url + user + key (TempAuth / v1.0, like ST_AUTH/ST_USER/ST_KEY), storage_url + token "
            "(like OS_STORAGE_URL/OS_AUTH_TOKEN), or Keystone v3: auth_version 3, auth_url, user, key (the "
            "password) and project_name (like OS_AUTH_URL/OS_USERNAME/OS_PASSWORD/OS_PROJECT_NAME)")
    profile, from_env = swift_env_fallback(profile)
    version = swift_auth_version(profile)
    user = profile.user or profile.username
    secret = profile.key or profile.password
    key = secret.get_secret_value() if secret else None
    token = profile.token.get_secret_value() if profile.token else None
    keystone = None
    env_note = f" (taken from the environment: {', '.join(from_env)})" if from_env else ""
    if version == "3":
        missing = [name for name, value in (("auth_url", profile.auth_url), ("user", user),
                                            ("key (the password)", key),
                                            ("project_name or project_id", profile.project_name or profile.project_id))
                   if not value]
        if missing and not (profile.storage_url and token):
            raise ConfigError(
                f"storage profile {profile.name!r} ({profile.url}) uses Keystone v3 but lacks {', '.join(missing)}: "
                "set them in the profile or its keystore key, or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and "
                f"OS_PROJECT_NAME in the environment{env_note}")
        if not missing:
            try:
                keystone = KeystoneAuth(
                    auth_url=profile.auth_url, username=user, password=key, project_name=profile.project_name,
                    project_id=profile.project_id, user_domain_name=profile.user_domain_name,
                    user_domain_id=profile.user_domain_id, project_domain_name=profile.project_domain_name,
                    project_domain_id=profile.project_domain_id,
                    region_name=profile.region_name or profile.region, interface=profile.interface or "public")
            except ConfigError as exc:
                raise ConfigError(f"storage profile {profile.name!r} ({profile.url}): {exc}{env_note}") from None
    elif not ((profile.storage_url and token) or (profile.auth_url and user and key)):
        have = [f for f in ("auth_url", "user", "key", "storage_url", "token") if getattr(profile, f)]
        raise ConfigError(
            f"storage profile {profile.name!r} ({profile.url}) lacks Swift credentials: set auth_url, user and "
            "key (TempAuth / v1.0), storage_url and token (pre-authenticated), or Keystone v3 (auth_version 3, "
            "auth_url, user, key, project_name; or the OS_* variables of the openstack CLI)"
            + (f"; it sets only {', '.join(have)}" if have else ""))
    segment_mib = profile.segment_size_mib or DEFAULT_SEGMENT_SIZE / MiB
    return SwiftStore(
        container, auth_url=None if keystone else profile.auth_url, user=None if keystone else user,
        key=None if keystone else key, storage_url=profile.storage_url,
        token=token, segment_size=max(1, math.floor(segment_mib * MiB)),
        segment_container=profile.options.get("segment_container") or None,
        timeout=parse_duration(profile.timeout), retries=min(profile.max_retries, 10),
        max_workers=max(4, profile.concurrency or 32),
        temp_url_key=(profile.secret_options["temp_url_key"].get_secret_value()
                      if "temp_url_key" in profile.secret_options else None),
        keystone=keystone)
