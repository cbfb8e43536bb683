"""WebDAV (RFC 4918) through httpx, behind :class:`packager.stores.base.Store`.

One :class:`WebDavStore` serves one origin (``http(s)://host[:port]``); keys are paths on it, so a DAV
root below the origin (``/remote.php/dav/files/me/``) is simply part of the key. ``webdav://`` hrefs
(kind ``webdav+http``) are spoken as http, ``webdavs://`` (``webdav+https``) as https.

* head: PROPFIND depth 0 (``getcontentlength``, ``getetag`` as the server returns it, ``getlastmodified``);
* reads: GET with ``Range``, streaming GET;
* writes: a streaming PUT of the async iterator to a hidden temporary name beside the target, then MOVE
  onto the final name, so a partial upload never looks complete; missing parent collections are
  created level by level with MKCOL (405 = already there);
* list: PROPFIND depth 1, recursively; delete: DELETE; copy: COPY.

Failures: a request that can be sent again (not a streamed PUT body, not MOVE) is retried with backoff
after a transport error or a 408/429/5xx answer; a download that breaks off resumes with ``Range`` +
``If-Match``; a MOVE whose answer was lost is settled by looking at the temporary and the target. Each
of these is counted in ``request_retries``. A body shorter than its ``Content-Length`` is an error.

WebDAV keeps no user metadata we can rely on, so ``keeps_metadata`` is False and :meth:`read_metadata`
returns ``{}``: relocation then verifies a present destination by reading it. WebDAV ETags are not
content hashes (wsgidav: inode-mtime-size, whole seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import posixpath
import ssl
import sys
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

import httpx

from packager.errors import AccessDenied, ConfigError, ObjectNotFound, StoreError, TransientStoreError
from packager.stores.base import ListedObject, ObjectFacts, parse_http_date, short_read


def _spare_sniffio_lookups() -> None:
    """httpcore 1.0 imports ``sniffio`` for every async request it sends, to tell asyncio from trio; anyio
    no longer depends on sniffio, so where it is not installed each of these imports fails after searching
    every ``sys.path`` entry (0.1-1 ms; ~5 % of the CPU of a WebDAV relocation in the test suite). A ``None``
    entry in ``sys.modules`` makes that import fail at once, with the same outcome (httpcore then assumes
    asyncio). Installing sniffio is the other cure."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_spare_sniffio_lookups()

DAV = "{DAV:}"
PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
                 b"<d:resourcetype/><d:getcontentlength/><d:getetag/><d:getlastmodified/>"
                 b"</d:prop></d:propfind>")
#: prefix of the temporary name an upload is written to before it is moved into place
TEMP_PREFIX = ".stacpkg-upload-"
_KEY_SAFE = "/:@!$&'()*+,;=~"
#: methods whose request can be sent again when its answer was lost: repeating them leaves the server as
#: one success would (MKCOL answers 405 the second time, DELETE 404, COPY/PUT with the same bytes overwrite).
#: MOVE is not among them (see :meth:`WebDavStore._move_into_place`), nor conditional writes (:func:`_conditional`).
REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "MKCOL", "DELETE", "PUT", "COPY"})
#: seconds before a request is sent again; doubled each time up to RETRY_MAX_WAIT
RETRY_FIRST_WAIT = 0.1
RETRY_MAX_WAIT = 3.2
#: A streamed PUT body goes out in chunks of at most this size (chunked transfer coding). The relocation
#: hands over 8 MiB at a time; cheroot (wsgidav's server) re-slices its buffer for every 8 KiB it reads
#: from a chunk, so a 5 MiB chunk costs it ~1.6 GB of memcpy and a relocation onto it crawled.
PUT_PIECE = 64 * 1024


def _is_stream(content: Any) -> bool:
    """A request body that can be sent only once (an iterator), as opposed to bytes/str/None."""
    return content is not None and not isinstance(content, (bytes, bytearray, memoryview, str))


def _conditional(headers: dict[str, str] | None) -> bool:
    """A conditional write (If-Match / If-None-Match) is not sent again on our own: when its answer was lost,
    the repeat fails its own precondition (412) and cannot tell its own success from another writer's."""
    return any(h.lower() in ("if-match", "if-none-match") for h in (headers or {}))


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class WebDavStore:
    """One WebDAV origin with optional basic auth; a client per event loop, connections reused."""

    keeps_metadata = False

    def __init__(self, origin: str, *, username: str | None = None, password: str | None = None,
                 href_scheme: str | None = None, timeout: float = 120.0, connect_timeout: float = 10.0,
                 max_connections: int = 64, verify: bool = True, retries: int = 4) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"WebDAV origin {origin!r} must be http(s)://host[:port]")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._href_origin = f"{href_scheme or ('webdavs' if parts.scheme == 'https' else 'webdav')}://{parts.netloc}"
        self.describe = self._href_origin
        self._auth = httpx.BasicAuth(username, password or "") if username else None
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._verify = verify
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = \
            weakref.WeakKeyDictionary()
        self._known_dirs: set[str] = set()
        self._ssl_context: ssl.SSLContext | None = None
        #: how often a failed request is sent again (replayable requests only; see :meth:`_request`)
        self.retries = max(0, retries)
        #: requests sent again after a transport error or a 408/429/5xx answer, downloads resumed after a
        #: broken body, MOVEs whose lost answer was recovered; the engine's row retries are counted apart
        self.request_retries = 0

    # -- plumbing ------------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        """httpx clients are bound to the event loop that opened their connections: one per loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(auth=self._auth, timeout=self._timeout, limits=self._limits,
                                       follow_redirects=False,
                                       transport=httpx.AsyncHTTPTransport(retries=2, limits=self._limits,
                                                                          verify=self._tls()))
            self._clients[loop] = client
        return client

    def _tls(self) -> ssl.SSLContext | bool:
        """One TLS context for all of this store's clients (building one loads the CA bundle: ~30 ms of CPU,
        and every event loop - lock, relocation, validation, lease - gets its own client); none for http."""
        if not self.origin.startswith("https://"):
            return False
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context(verify=self._verify)
        return self._ssl_context

    def _url(self, key: str) -> str:
        return f"{self.origin}/{quote(key.lstrip('/'), safe=_KEY_SAFE)}"

    def _href(self, key: str) -> str:
        return f"{self._href_origin}/{quote(key.lstrip('/'), safe=_KEY_SAFE)}"

    def _error(self, status: int, href: str, what: str) -> StoreError:
        detail = f"{what}: HTTP {status}"
        if status == 404:
            return ObjectNotFound(f"{href}: object not found ({detail})", href=href)
        if status in (401, 403):
            return AccessDenied(f"{href}: access denied ({detail}); check the storage profile's username and "
                                "password for this WebDAV server", href=href)
        if status in (408, 423, 425, 429) or status >= 500:
            return TransientStoreError(f"{href}: {detail}", href=href)
        return StoreError(f"{href}: {detail}", href=href)

    async def _backoff(self, attempt: int) -> None:
        """Count one retry and wait before it: 0.1 s, 0.2 s, 0.4 s ... up to 3.2 s."""
        self.request_retries += 1
        await asyncio.sleep(min(RETRY_FIRST_WAIT * (2 ** attempt), RETRY_MAX_WAIT))

    async def _request(self, method: str, key: str, *, ok: tuple[int, ...], what: str | None = None,
                       for_key: str | None = None, retry: bool | None = None, **kwargs: Any) -> httpx.Response:
        """One request; errors name ``for_key`` (the object an operation is for) or else ``key``.

        A request that can safely be sent again (``retry``; by default methods in :data:`REPLAYABLE` with
        a body given as bytes, not a stream) is retried with backoff, up to :attr:`retries` times, after a
        transport error (reset, body cut short, timeout) or a 408/429/5xx answer."""
        href = self._href(for_key if for_key is not None else key)
        if retry is None:
            retry = (method in REPLAYABLE and not _is_stream(kwargs.get("content"))
                     and not (method not in ("GET", "HEAD", "PROPFIND") and _conditional(kwargs.get("headers"))))
        attempt = 0
        while True:
            try:
                response = await self._client().request(method, self._url(key), **kwargs)
            except httpx.TransportError as exc:
                if retry and attempt < self.retries:
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                raise TransientStoreError(f"{href}: {method} failed: {type(exc).__name__}: {exc}"
                                          + (f" (after {attempt} retries)" if attempt else ""), href=href) from None
            except httpx.HTTPError as exc:
                raise StoreError(f"{href}: {method} failed: {type(exc).__name__}: {exc}", href=href) from None
            if response.status_code in ok:
                return response
            if retry and attempt < self.retries and _retryable_status(response.status_code):
                await self._backoff(attempt)
                attempt += 1
                continue
            raise self._error(response.status_code, href, what or method)

    # -- PROPFIND ------------------------------------------------------------------------------
    def _parse_multistatus(self, body: bytes) -> list[tuple[str, bool, ObjectFacts]]:
        """(key, is_collection, facts) per response of a multistatus body."""
        out = []
        root = ElementTree.fromstring(body)
        for response in root.iter(f"{DAV}response"):
            href_el = response.find(f"{DAV}href")
            if href_el is None or not href_el.text:
                continue
            path = unquote(urlsplit(href_el.text.strip()).path)
            props: dict[str, Any] = {}
            collection = False
            for propstat in response.findall(f"{DAV}propstat"):
                status = (propstat.findtext(f"{DAV}status") or "").split()
                if len(status) > 1 and status[1] != "200":
                    continue
                prop = propstat.find(f"{DAV}prop")
                if prop is None:
                    continue
                for el in prop:
                    name = el.tag.removeprefix(DAV)
                    if name == "resourcetype":
                        collection = el.find(f"{DAV}collection") is not None
                    else:
                        props[name] = (el.text or "").strip() or None
            facts = ObjectFacts(size=int(props.get("getcontentlength") or 0), etag=props.get("getetag"),
                                last_modified=parse_http_date(props.get("getlastmodified")))
            out.append((path.lstrip("/"), collection, facts))
        return out

    async def _propfind(self, key: str, depth: str) -> list[tuple[str, bool, ObjectFacts]]:
        response = await self._request("PROPFIND", key, ok=(207,), what=f"PROPFIND depth {depth}",
                                       content=PROPFIND_BODY,
                                       headers={"Depth": depth, "Content-Type": "application/xml"})
        try:
            return self._parse_multistatus(response.content)
        except ElementTree.ParseError as exc:
            href = self._href(key)
            raise StoreError(f"{href}: unreadable PROPFIND answer ({exc})", href=href) from None

    # -- reads ---------------------------------------------------------------------------------
    async def head(self, key: str) -> ObjectFacts:
        entries = await self._propfind(key, "0")
        if not entries:
            raise ObjectNotFound(f"{self._href(key)}: object not found (empty PROPFIND answer)", href=self._href(key))
        _, collection, facts = entries[0]
        if collection:
            raise ObjectNotFound(f"{self._href(key)}: is a collection, not an object", href=self._href(key))
        return facts

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        response = await self._request("GET", key, ok=(200, 206), what="GET range",
                                       headers={"Range": f"bytes={start}-{end - 1}"})
        if response.status_code == 200:  # the server ignored Range
            return response.content[start:end]
        return response.content

    async def get_ranges(self, key: str, starts: list[int], ends: list[int]) -> list[bytes]:
        return list(await asyncio.gather(*(self.get_range(key, s, e) for s, e in zip(starts, ends, strict=True))))

    async def stream(self, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        """The object's bytes. A download that breaks off (reset, body cut short, 5xx) is resumed where it
        stopped with a ``Range`` request conditional on the first answer's ETag (``If-Match``), up to
        :attr:`retries` times; a changed object (412) is an error, never a splice of two versions."""
        href = self._href(key)
        sent = 0
        expected: int | None = None
        etag: str | None = None
        attempt = 0
        while True:
            headers = {}
            if sent:
                headers["Range"] = f"bytes={sent}-"
                if etag:
                    headers["If-Match"] = etag
            try:
                async with self._client().stream("GET", self._url(key), headers=headers) as response:
                    status = response.status_code
                    if status not in (200, 206) or (status == 206 and not sent):
                        if _retryable_status(status) and attempt < self.retries:
                            await self._backoff(attempt)
                            attempt += 1
                            continue
                        if status == 412:
                            raise TransientStoreError(f"{href}: the object changed while it was read (412 on "
                                                      "resuming the download)", href=href)
                        raise self._error(status, href, "GET")
                    length = response.headers.get("content-length")
                    if not sent:
                        etag = response.headers.get("etag")
                        expected = int(length) if length and length.isdigit() else None
                    skip = sent if status == 200 else 0  # the server ignored Range: drop what we have
                    if status == 206 and expected is not None and length and length.isdigit() \
                            and sent + int(length) != expected:
                        raise TransientStoreError(f"{href}: resumed download does not fit the object "
                                                  f"({sent} + {length} != {expected} bytes)", href=href)
                    async for chunk in response.aiter_bytes(chunk_size):
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk, skip = chunk[skip:], 0
                        sent += len(chunk)
                        yield chunk
                if expected is not None and sent != expected:
                    raise short_read(href, sent, expected)
                return
            except httpx.TransportError as exc:
                if attempt < self.retries:
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                raise TransientStoreError(f"{href}: GET failed: {type(exc).__name__}: {exc}"
                                          + (f" (after {attempt} retries)" if attempt else ""), href=href) from None
            except httpx.HTTPError as exc:
                raise StoreError(f"{href}: GET failed: {type(exc).__name__}: {exc}", href=href) from None

    async def read_metadata(self, key: str) -> dict[str, str]:
        return {}

    async def set_checksum(self, key: str, checksum: str) -> None:
        """WebDAV keeps no checksum metadata here (dead properties are not portable between servers)."""

    async def list(self, prefix: str) -> AsyncIterator[ListedObject]:
        """Every object under ``prefix`` (a collection path), recursively, in no particular order."""
        async for listed in self.list_with_temporaries(prefix):
            if not posixpath.basename(listed.key).startswith(TEMP_PREFIX):
                yield listed

    async def list_with_temporaries(self, prefix: str) -> AsyncIterator[ListedObject]:
        """:meth:`list`, plus the hidden temporaries of unfinished uploads (for the clean-up of killed runs)."""
        start = prefix.strip("/")
        pending = [start]
        seen: set[str] = set()
        while pending:
            collection = pending.pop()
            try:
                entries = await self._propfind(collection + "/" if collection else "", "1")
            except ObjectNotFound:
                continue
            for key, is_collection, facts in entries:
                key = key.rstrip("/")
                if key == collection or key in seen:
                    continue
                seen.add(key)
                if is_collection:
                    pending.append(key)
                else:
                    yield ListedObject(key, facts)

    # -- writes --------------------------------------------------------------------------------
    async def _ensure_parents(self, key: str) -> None:
        """MKCOL every missing ancestor collection of ``key``, top down (405: it exists already)."""
        parent = posixpath.dirname(key.strip("/"))
        if not parent or parent in self._known_dirs:
            return
        levels = parent.split("/")
        for depth in range(1, len(levels) + 1):
            path = "/".join(levels[:depth])
            if path in self._known_dirs:
                continue
            try:
                await self._request("MKCOL", path + "/", ok=(201, 405), what=f"MKCOL /{path}/", for_key=key)
            except StoreError as exc:
                # another upload may have made it a moment ago (wsgidav then answers 500 'File exists')
                if isinstance(exc, AccessDenied) or not await self._is_collection(path):
                    raise
            self._known_dirs.add(path)

    async def _is_collection(self, path: str) -> bool:
        try:
            entries = await self._propfind(path + "/", "0")
        except StoreError:
            return False
        return bool(entries) and entries[0][1]

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str | None:
        """As :meth:`put_stream`; the PUT of bytes in memory is sent again when it fails."""
        return await self._upload(key, bytes(data), content_type)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, chunk_size: int, max_concurrency: int,
                         content_type: str | None = None, metadata: dict[str, str] | None = None) -> str | None:
        """PUT to a hidden temporary name, then MOVE onto ``key``: the object appears whole or not at all.

        Returns None: the ETag of the moved object is what :meth:`head` reports."""
        return await self._upload(key, chunks, content_type)

    async def _upload(self, key: str, chunks: AsyncIterator[bytes] | bytes, content_type: str | None) -> None:
        key = key.strip("/")
        temp = posixpath.join(posixpath.dirname(key), f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        await self._ensure_parents(key)
        headers = {"Content-Type": content_type} if content_type else {}
        source_error: list[BaseException] = []
        sent = [0]

        async def body() -> AsyncIterator[bytes]:
            # A failing source ends the body cleanly instead of aborting the connection: the server then
            # finishes its PUT of the temporary name before we delete it. An aborted chunked upload leaves
            # a server handler that may still create the temporary file after our DELETE has been answered.
            try:
                async for chunk in chunks:
                    view = memoryview(chunk)
                    for start in range(0, len(view), PUT_PIECE):
                        piece = bytes(view[start:start + PUT_PIECE])
                        sent[0] += len(piece)
                        yield piece
            except Exception as exc:
                source_error.append(exc)

        if isinstance(chunks, bytes):
            content: AsyncIterator[bytes] | bytes = chunks  # replayable: _request retries it
            sent[0] = len(chunks)
        else:
            content = body()
        try:
            try:
                await self._request("PUT", temp, ok=(200, 201, 204), what="PUT", content=content, headers=headers,
                                    for_key=key)
            except StoreError as exc:
                if "HTTP 409" in str(exc):  # a parent collection vanished since it was made: retry helps
                    self._known_dirs.clear()
                    raise TransientStoreError(str(exc), href=exc.href) from None
                raise
            if source_error:
                await self._delete_quietly(temp)
                raise self._source_failed(key, source_error[0])
            await self._move_into_place(temp, key, sent[0])
        except BaseException as exc:
            if source_error and not isinstance(exc, asyncio.CancelledError):
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self._delete_quietly(temp))
                raise self._source_failed(key, source_error[0]) from None
            with contextlib.suppress(BaseException):  # the original error matters more than the cleanup
                await asyncio.shield(self._delete_until_gone(temp))
            raise
        return None

    async def _move_into_place(self, temp: str, key: str, size: int) -> None:
        """MOVE the uploaded temporary ``temp`` (``size`` bytes) onto ``key``.

        MOVE is not simply sent again: when its answer is lost (a reset, a timeout, a 5xx from something in
        between) the server may have moved already, and a second MOVE would fail with 404 and the upload
        be done again. After such a failure we look instead: the temporary still there -> MOVE again; the
        temporary gone and ``key`` holding ``size`` bytes -> the lost MOVE did it (the caller verifies the
        bytes as for any upload); both gone -> a transient error (the row is tried again)."""
        href = self._href(key)
        headers = {"Destination": self._url(key), "Overwrite": "T"}
        attempt = 0
        while True:
            try:
                response = await self._client().request("MOVE", self._url(temp), headers=headers)
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:
                raise StoreError(f"{href}: MOVE into place failed: {type(exc).__name__}: {exc}", href=href) from None
            else:
                status = response.status_code
                if status in (201, 204):
                    return
                if not (_retryable_status(status) or (status == 404 and attempt)):
                    raise self._error(status, href, "MOVE into place")
                failure = f"HTTP {status}"
            state = await self._move_state(temp, key, size)
            if state == "moved":
                self.request_retries += 1  # a lost answer recovered: counted like a retry
                return
            if state == "gone":
                raise TransientStoreError(f"{href}: MOVE into place failed ({failure}) and the uploaded temporary "
                                          "is gone without the object being there: upload again", href=href)
            if attempt >= self.retries:
                raise TransientStoreError(f"{href}: MOVE into place failed: {failure} (after {attempt} retries)",
                                          href=href)
            await self._backoff(attempt)
            attempt += 1

    async def _move_state(self, temp: str, key: str, size: int) -> str:
        """'pending' (the temporary is still there), 'moved' (it is gone, ``key`` has ``size`` bytes), 'gone'."""
        try:
            if await self._propfind(temp, "0"):
                return "pending"
        except ObjectNotFound:
            pass
        try:
            facts = await self.head(key)
        except ObjectNotFound:
            return "gone"
        return "moved" if facts.size == size else "gone"

    def _source_failed(self, key: str, source: BaseException) -> StoreError:
        """The error to raise when the bytes being uploaded could not be read: the source's own if typed."""
        if isinstance(source, StoreError):
            return source
        href = self._href(key)
        return StoreError(f"{href}: reading the source failed: {type(source).__name__}: {source}", href=href)

    async def _delete_quietly(self, key: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self._client().request("DELETE", self._url(key))

    async def _delete_until_gone(self, key: str) -> None:
        """Delete a temporary upload after a failed PUT, then look again a few times over about a second.

        When the connection broke mid-upload the server's handler for it may still be running and write
        the file after our first DELETE; a hidden temporary must not be left behind holding bytes."""
        await self._delete_quietly(key)
        for delay in (0.05, 0.2, 0.75):
            await asyncio.sleep(delay)
            with contextlib.suppress(httpx.HTTPError):
                response = await self._client().request("HEAD", self._url(key))
                if response.status_code != 404:
                    await self._delete_quietly(key)

    async def delete(self, key: str) -> None:
        await self._request("DELETE", key, ok=(200, 204, 404), what="DELETE")

    async def copy(self, source_key: str, dest_key: str) -> None:
        await self._ensure_parents(dest_key)
        await self._request("COPY", source_key, ok=(201, 204), what="COPY",
                            headers={"Destination": self._url(dest_key), "Overwrite": "T", "Depth": "0"})

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def build_webdav_store(location: Any, profile: Any) -> WebDavStore:
    """A :class:`WebDavStore` for a ``webdav+http(s)`` location; the profile (if any) gives basic auth."""
    from packager.stores.swift import parse_duration

    origin = str(location.container)
    username = password = None
    timeout, connect_timeout, max_connections = 120.0, 10.0, 64
    if profile is not None:
        username = profile.username
        password = profile.password.get_secret_value() if profile.password else None
        if bool(username) != bool(password):
            missing = "password" if username else "username"
            raise ConfigError(f"storage profile {profile.name!r} ({profile.url}) sets only one half of WebDAV basic "
                              f"auth: set {missing} too (username and password), or neither for anonymous access")
        timeout = parse_duration(profile.timeout)
        connect_timeout = parse_duration(profile.connect_timeout, 10.0)
        max_connections = profile.concurrency or 64
    retries = 4
    if profile is not None:
        retries = min(profile.max_retries, 10)
    return WebDavStore(origin, username=username, password=password, timeout=timeout,
                       connect_timeout=connect_timeout, max_connections=max_connections, retries=retries)
