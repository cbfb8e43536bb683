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

WebDAV keeps no user metadata we can rely on, so ``keeps_metadata`` is False and :meth:`read_metadata`
returns ``{}``: relocation then verifies a present destination by reading it. WebDAV ETags are not
content hashes (wsgidav: inode-mtime-size, whole seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

import httpx

from packager.errors import AccessDenied, ConfigError, ObjectNotFound, StoreError, TransientStoreError
from packager.stores.base import ListedObject, ObjectFacts, parse_http_date

DAV = "{DAV:}"
PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop>'
                 b"<d:resourcetype/><d:getcontentlength/><d:getetag/><d:getlastmodified/>"
                 b"</d:prop></d:propfind>")
#: prefix of the temporary name an upload is written to before it is moved into place
TEMP_PREFIX = ".stacpkg-upload-"
_KEY_SAFE = "/:@!$&'()*+,;=~"


class WebDavStore:
    """One WebDAV origin with optional basic auth; a client per event loop, connections reused."""

    keeps_metadata = False

    def __init__(self, origin: str, *, username: str | None = None, password: str | None = None,
                 href_scheme: str | None = None, timeout: float = 120.0, connect_timeout: float = 10.0,
                 max_connections: int = 64, verify: bool = True) -> None:
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

    # -- plumbing ------------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        """httpx clients are bound to the event loop that opened their connections: one per loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(auth=self._auth, timeout=self._timeout, limits=self._limits,
                                       verify=self._verify, follow_redirects=False,
                                       transport=httpx.AsyncHTTPTransport(retries=2, limits=self._limits,
                                                                          verify=self._verify))
            self._clients[loop] = client
        return client

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

    async def _request(self, method: str, key: str, *, ok: tuple[int, ...], what: str | None = None,
                       for_key: str | None = None, **kwargs: Any) -> httpx.Response:
        """One request; errors name ``for_key`` (the object an operation is for) or else ``key``."""
        href = self._href(for_key if for_key is not None else key)
        try:
            response = await self._client().request(method, self._url(key), **kwargs)
        except httpx.TransportError as exc:
            raise TransientStoreError(f"{href}: {method} failed: {type(exc).__name__}: {exc}", href=href) from None
        except httpx.HTTPError as exc:
            raise StoreError(f"{href}: {method} failed: {type(exc).__name__}: {exc}", href=href) from None
        if response.status_code not in ok:
            raise self._error(response.status_code, href, what or method)
        return response

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
        href = self._href(key)
        try:
            async with self._client().stream("GET", self._url(key)) as response:
                if response.status_code != 200:
                    raise self._error(response.status_code, href, "GET")
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk
        except httpx.TransportError as exc:
            raise TransientStoreError(f"{href}: GET failed: {type(exc).__name__}: {exc}", href=href) from None
        except httpx.HTTPError as exc:
            raise StoreError(f"{href}: GET failed: {type(exc).__name__}: {exc}", href=href) from None

    async def read_metadata(self, key: str) -> dict[str, str]:
        return {}

    async def set_checksum(self, key: str, checksum: str) -> None:
        """WebDAV keeps no checksum metadata here (dead properties are not portable between servers)."""

    async def list(self, prefix: str) -> AsyncIterator[ListedObject]:
        """Every object under ``prefix`` (a collection path), recursively, in no particular order."""
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
                elif not posixpath.basename(key).startswith(TEMP_PREFIX):
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
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), chunk_size=max(1, len(data)), max_concurrency=1,
                                     content_type=content_type)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, chunk_size: int, max_concurrency: int,
                         content_type: str | None = None, metadata: dict[str, str] | None = None) -> str | None:
        """PUT to a hidden temporary name, then MOVE onto ``key``: the object appears whole or not at all.

        Returns None: the ETag of the moved object is what :meth:`head` reports."""
        key = key.strip("/")
        temp = posixpath.join(posixpath.dirname(key), f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        await self._ensure_parents(key)
        headers = {"Content-Type": content_type} if content_type else {}
        source_error: list[BaseException] = []

        async def body() -> AsyncIterator[bytes]:
            # A failing source ends the body cleanly instead of aborting the connection: the server then
            # finishes its PUT of the temporary name before we delete it. An aborted chunked upload leaves
            # a server handler that may still create the temporary file after our DELETE has been answered.
            try:
                async for chunk in chunks:
                    if chunk:
                        yield bytes(chunk)
            except Exception as exc:
                source_error.append(exc)

        try:
            try:
                await self._request("PUT", temp, ok=(200, 201, 204), what="PUT", content=body(), headers=headers,
                                    for_key=key)
            except StoreError as exc:
                if "HTTP 409" in str(exc):  # a parent collection vanished since it was made: retry helps
                    self._known_dirs.clear()
                    raise TransientStoreError(str(exc), href=exc.href) from None
                raise
            if source_error:
                await self._delete_quietly(temp)
                raise self._source_failed(key, source_error[0])
            await self._request("MOVE", temp, ok=(201, 204), what="MOVE into place", for_key=key,
                                headers={"Destination": self._url(key), "Overwrite": "T"})
        except BaseException as exc:
            if source_error and not isinstance(exc, asyncio.CancelledError):
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self._delete_quietly(temp))
                raise self._source_failed(key, source_error[0]) from None
            with contextlib.suppress(BaseException):  # the original error matters more than the cleanup
                await asyncio.shield(self._delete_until_gone(temp))
            raise
        return None

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
    return WebDavStore(origin, username=username, password=password, timeout=timeout,
                       connect_timeout=connect_timeout, max_connections=max_connections)
