"""Remove what a killed relocation leaves under its target: uploads that never completed.

A run killed half-way (SIGKILL, OOM, a lost pod) never shows a partial object at a final key (multipart
uploads appear on completion, Swift large objects when their manifest is PUT, WebDAV uploads are moved
into place, local files renamed), but its unfinished uploads still hold storage:

* **S3**: incomplete multipart uploads (invisible at the key, billed until aborted). Found with
  ``ListMultipartUploads`` (``GET /bucket?uploads&prefix=``) and removed with ``AbortMultipartUpload``
  (``DELETE /bucket/key?uploadId=``): obstore has no API for either, so these two requests are signed here
  with AWS Signature Version 4, using the store's own credentials. An S3 lifecycle rule
  ``AbortIncompleteMultipartUpload`` is the complementary server-side safety net.
* **Swift**: segment sets ``<container>_segments/<key>/<stamp>-<id>/NNNNNNNN`` that no manifest references.
* **WebDAV**: hidden temporaries ``.stacpkg-upload-*`` beside their keys.
* **local files**: obstore's staging files ``<path>#<n>`` beside their paths.

What is removed must not belong to a live run. The relocation calls this while it holds the target's
lease (:mod:`packager.lease`) and before it starts any upload of its own, so ``cutoff`` is the lease's
acquisition time *on the server's clock*: an upload to one of this run's own destination keys (``planned``)
started before it was started by a run that no longer holds the lease (dead, or fenced off and about to
stop). Uploads to other keys under the prefix may belong to a run holding another lease (a partition's
sub-prefix), so they are removed only once older than ``STALE_AFTER`` (24 h), as is everything when
there is no lease.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

from packager.errors import StoreError, TransientStoreError
from packager.locations import Location

STALE_AFTER = dt.timedelta(hours=24)
_STAGING = re.compile(r"#\d+$")


@dataclass(slots=True)
class CleanupSummary:
    multipart_uploads_aborted: int = 0
    segments_deleted: int = 0
    temporaries_deleted: int = 0
    #: found but left alone: started after the cut-off (may belong to a live writer)
    kept_recent: int = 0
    #: why nothing could be looked at (e.g. no credentials to sign with), else None
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return self.multipart_uploads_aborted + self.segments_deleted + self.temporaries_deleted

    def as_record(self) -> dict:
        return {"multipart_uploads_aborted": self.multipart_uploads_aborted,
                "segments_deleted": self.segments_deleted, "temporaries_deleted": self.temporaries_deleted,
                "kept_recent": self.kept_recent, "skipped": self.skipped, "errors": self.errors[:5]}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def default_cutoff() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - STALE_AFTER


@dataclass(frozen=True)
class _Policy:
    """Which unfinished upload may go: any older than ``stale``; one for a planned key if not after ``cutoff``."""

    cutoff: dt.datetime
    stale: dt.datetime
    planned: frozenset[str] | None
    planned_dirs: frozenset[str] | None

    def allows(self, key: str, started: dt.datetime | None, *, by_dir: bool = False) -> bool:
        key = key.strip("/")
        mine = self.planned is None or (
            posixpath.dirname(key) in self.planned_dirs if by_dir else key in self.planned)
        if started is None:
            return mine
        return started <= self.stale or (mine and started <= self.cutoff)


async def cleanup_incomplete(store: Any, target: Location, cutoff: dt.datetime | None = None,
                             planned: set[str] | None = None) -> CleanupSummary:
    """Remove incomplete uploads under ``target``: those for ``planned`` keys (all keys if None) started at
    or before ``cutoff`` (server time), and any started more than ``STALE_AFTER`` ago."""
    stale = default_cutoff()
    keys = frozenset(k.strip("/") for k in planned) if planned is not None else None
    policy = _Policy(_utc(cutoff) or stale, stale, keys,
                     frozenset(posixpath.dirname(k) for k in keys) if keys is not None else None)
    inner = getattr(store, "_inner", store)  # a keystore-guarded store: write capability already checked
    summary = CleanupSummary()
    prefix = target.key.strip("/")
    try:
        if target.kind == "s3":
            await _cleanup_s3(inner, prefix, policy, summary)
        elif target.kind == "swift":
            await _cleanup_swift(inner, prefix, policy, summary)
        elif target.kind.startswith("webdav+"):
            await _cleanup_webdav(inner, prefix, policy, summary)
        elif target.kind == "file":
            _cleanup_local(target.key, policy, summary)
        else:
            summary.skipped = f"no clean-up of incomplete uploads for {target.kind} stores"
    except StoreError as exc:
        summary.errors.append(str(exc))
    return summary


# -- S3 ---------------------------------------------------------------------------------------------------
def _s3_quote(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


class S3Signer:
    """Signs the requests obstore does not make (multipart listing and abort) with AWS Signature V4.

    The signing itself is botocore's (``S3SigV4Auth``), the reference implementation; this class only
    adapts it to httpx: the signed headers, and the URL exactly as signed."""

    def __init__(self, access_key: str, secret_key: str, region: str, token: str | None = None) -> None:
        from botocore.auth import S3SigV4Auth
        from botocore.credentials import Credentials

        self._auth = S3SigV4Auth(Credentials(access_key, secret_key, token), "s3", region)

    def sign(self, method: str, url: str, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        """(the URL to send, its headers) for a bodyless request."""
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, params=query)
        self._auth.add_auth(request)
        prepared = request.prepare()
        return prepared.url, {k: v for k, v in prepared.headers.items() if k.lower() != "host"}


async def _s3_credentials(raw: Any, config: dict[str, Any]) -> tuple[str, str, str | None] | None:
    key, secret = config.get("access_key_id"), config.get("secret_access_key")
    token = config.get("session_token") or config.get("token")
    if key and secret:
        return key, secret, token
    provider = getattr(raw, "credential_provider", None)
    if provider is not None:
        credential = provider()
        if inspect.isawaitable(credential):
            credential = await credential
        return credential["access_key_id"], credential["secret_access_key"], credential.get("token")
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
                os.environ.get("AWS_SESSION_TOKEN"))
    return None


def _bucket_url(config: dict[str, Any]) -> str:
    """The bucket's base URL as obstore addresses it (path style unless virtual-hosted is asked for)."""
    bucket = config.get("bucket", "")
    region = config.get("region") or "us-east-1"
    endpoint = (config.get("endpoint") or "").rstrip("/")
    virtual = str(config.get("virtual_hosted_style_request", "")).lower() == "true"
    if endpoint:
        return endpoint if virtual else f"{endpoint}/{_s3_quote(bucket)}"
    if virtual:
        return f"https://{bucket}.s3.{region}.amazonaws.com"
    return f"https://s3.{region}.amazonaws.com/{_s3_quote(bucket)}"


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_uploads(body: bytes) -> tuple[list[tuple[str, str, dt.datetime | None]], dict[str, str] | None]:
    """(key, upload id, initiated) per upload, and the markers of the next page (None: last page)."""
    root = ElementTree.fromstring(body)
    uploads, fields = [], {}
    for child in root:
        name = _local_name(child.tag)
        if name == "Upload":
            values = {_local_name(c.tag): (c.text or "") for c in child}
            initiated = None
            with contextlib.suppress(ValueError):
                initiated = dt.datetime.fromisoformat(values.get("Initiated", "").replace("Z", "+00:00"))
            uploads.append((values.get("Key", ""), values.get("UploadId", ""), _utc(initiated)))
        else:
            fields[name] = child.text or ""
    if fields.get("IsTruncated", "false").lower() != "true":
        return uploads, None
    return uploads, {"key-marker": fields.get("NextKeyMarker", ""),
                     "upload-id-marker": fields.get("NextUploadIdMarker", "")}


class S3MultipartApi:
    """``ListMultipartUploads`` and ``AbortMultipartUpload`` for the bucket of an obstore ``S3Store``."""

    def __init__(self, store: Any) -> None:
        raw = getattr(store, "_store", None)  # the obstore S3Store behind packager's ObstoreStore
        self._raw = raw
        self.config = dict(getattr(raw, "config", None) or {})
        self.bucket = self.config.get("bucket", "")
        self.base = _bucket_url(self.config) if self.bucket else ""
        self._signer: S3Signer | None = None
        self._client: Any = None

    async def __aenter__(self) -> S3MultipartApi:
        import httpx

        credentials = await _s3_credentials(self._raw, self.config)
        if credentials is not None:
            self._signer = S3Signer(credentials[0], credentials[1], self.config.get("region") or "us-east-1",
                                    credentials[2])
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def usable(self) -> str | None:
        """None when requests can be made, else why not."""
        if not self.bucket:
            return "not an S3 bucket store"
        if self._signer is None and str(self.config.get("skip_signature", "")).lower() != "true":
            return "no static credentials to sign ListMultipartUploads with"
        return None

    async def _send(self, method: str, url: str, query: dict[str, str]) -> Any:
        """One request, tried up to 3 times on a dropped connection, 5xx or 429 (both calls are idempotent)."""
        import httpx
        from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        async for attempt in AsyncRetrying(stop=stop_after_attempt(3), reraise=True,
                                           wait=wait_exponential(multiplier=0.25, max=2),
                                           retry=retry_if_exception_type(TransientStoreError)):
            with attempt:
                signed_url, headers = self._signer.sign(method, url, query) if self._signer else (url, {})
                try:
                    response = await self._client.request(method, signed_url, headers=headers,
                                                          params=None if self._signer else query)
                except httpx.TransportError as exc:
                    raise TransientStoreError(f"s3://{self.bucket}: {method} for multipart clean-up failed: "
                                              f"{type(exc).__name__}", href=f"s3://{self.bucket}") from None
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientStoreError(f"s3://{self.bucket}: {method} for multipart clean-up answered "
                                              f"HTTP {response.status_code}", href=f"s3://{self.bucket}")
                return response
        raise AssertionError("unreachable: tenacity returns or raises")

    async def list_uploads(self, prefix: str) -> list[tuple[str, str, dt.datetime | None]]:
        """(key, upload id, initiated) of every incomplete multipart upload whose key starts with ``prefix``."""
        href = f"s3://{self.bucket}/{prefix}"
        query: dict[str, str] = {"uploads": ""}
        if prefix:
            query["prefix"] = prefix
        uploads: list[tuple[str, str, dt.datetime | None]] = []
        for _ in range(100_000):
            response = await self._send("GET", self.base + "/", query)
            if response.status_code != 200:
                raise StoreError(f"{href}: ListMultipartUploads answered HTTP {response.status_code}", href=href)
            page, following = _parse_uploads(response.content)
            uploads.extend(page)
            if following is None:
                break
            query = {**query, **following}
        return uploads

    async def abort(self, key: str, upload_id: str) -> bool:
        """Abort one upload; False if it was already gone."""
        response = await self._send("DELETE", f"{self.base}/{_s3_quote(key, safe='-_.~/')}", {"uploadId": upload_id})
        if response.status_code in (200, 204):
            return True
        if response.status_code == 404:
            return False
        href = f"s3://{self.bucket}/{key}"
        raise StoreError(f"{href}: AbortMultipartUpload answered HTTP {response.status_code}", href=href)


async def list_multipart_uploads(store: Any, prefix: str) -> list[tuple[str, str, dt.datetime | None]]:
    """Every incomplete multipart upload under ``prefix`` of an S3 store: (key, upload id, initiated)."""
    async with S3MultipartApi(getattr(store, "_inner", store)) as api:
        if api.usable:
            raise StoreError(f"s3://{api.bucket}/{prefix}: cannot list multipart uploads: {api.usable}")
        return await api.list_uploads(prefix)


async def _cleanup_s3(store: Any, prefix: str, policy: _Policy, summary: CleanupSummary) -> None:
    async with S3MultipartApi(store) as api:
        if api.usable:
            summary.skipped = api.usable
            return
        for key, upload_id, initiated in await api.list_uploads(prefix + "/" if prefix else ""):
            if not policy.allows(key, initiated):
                summary.kept_recent += 1
                continue
            try:
                summary.multipart_uploads_aborted += await api.abort(key, upload_id)
            except StoreError as exc:
                summary.errors.append(str(exc))


# -- Swift ------------------------------------------------------------------------------------------------
def _swift_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


async def _cleanup_swift(store: Any, prefix: str, policy: _Policy, summary: CleanupSummary) -> None:
    """Delete segment sets under ``prefix`` that the object's current manifest does not reference."""
    import json

    from swiftclient.exceptions import ClientException

    segments = store.segment_container
    listing_prefix = prefix + "/" if prefix else ""

    def list_segments(conn: Any) -> list[dict]:
        try:
            return conn.get_container(segments, prefix=listing_prefix or None, full_listing=True)[1]
        except ClientException as exc:
            if exc.http_status == 404:
                return []
            raise

    entries = await store._run(list_segments, f"swift://{segments}/{prefix}")  # noqa: SLF001
    sets: dict[str, list[dict]] = {}
    for entry in entries:
        name = entry.get("name", "")
        if name.count("/") < 2:
            continue
        sets.setdefault(name.rsplit("/", 1)[0], []).append(entry)
    referenced_by_key: dict[str, set[str]] = {}
    for set_prefix, members in sets.items():
        key = set_prefix.rsplit("/", 1)[0]
        if key not in referenced_by_key:
            def manifest(conn: Any, key: str = key) -> set[str]:
                try:
                    headers = conn.head_object(store.container, key)
                except ClientException as exc:
                    if exc.http_status == 404:
                        return set()
                    raise
                if str(headers.get("x-static-large-object", "")).lower() != "true":
                    return set()
                _, body = conn.get_object(store.container, key, query_string="multipart-manifest=get")
                return {str(s.get("name", "")).lstrip("/").split("/", 1)[-1].rsplit("/", 1)[0]
                        for s in json.loads(body)}

            referenced_by_key[key] = await store._run(manifest, store._href(key))  # noqa: SLF001
        if set_prefix in referenced_by_key[key]:
            continue
        times = [_swift_time(m.get("last_modified")) for m in members]
        newest = None if None in times else max(times, default=None)
        if not policy.allows(key, newest):
            summary.kept_recent += 1
            continue
        for member in members:
            def delete(conn: Any, name: str = member["name"]) -> None:
                try:
                    conn.delete_object(segments, name)
                except ClientException as exc:
                    if exc.http_status != 404:
                        raise

            try:
                await store._run(delete, f"swift://{segments}/{member['name']}", write=True)  # noqa: SLF001
                summary.segments_deleted += 1
            except StoreError as exc:
                summary.errors.append(str(exc))


# -- WebDAV -----------------------------------------------------------------------------------------------
async def _cleanup_webdav(store: Any, prefix: str, policy: _Policy, summary: CleanupSummary) -> None:
    from packager.stores.webdav import TEMP_PREFIX

    async for listed in store.list_with_temporaries(prefix):
        key = listed.key
        if not posixpath.basename(key).startswith(TEMP_PREFIX):
            continue
        if not policy.allows(key, _utc(listed.facts.last_modified), by_dir=True):
            summary.kept_recent += 1
            continue
        try:
            await store.delete(key)
            summary.temporaries_deleted += 1
        except StoreError as exc:
            summary.errors.append(str(exc))


# -- local files ------------------------------------------------------------------------------------------
def _cleanup_local(root: str, policy: _Policy, summary: CleanupSummary) -> None:
    if not os.path.isdir(root):
        return
    for folder, _, files in os.walk(root):
        for name in files:
            if not _STAGING.search(name):
                continue
            path = os.path.join(folder, name)
            try:
                modified = dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.UTC)
                if not policy.allows(_STAGING.sub("", path).lstrip("/"), modified):
                    summary.kept_recent += 1
                    continue
                os.unlink(path)
                summary.temporaries_deleted += 1
            except OSError as exc:
                summary.errors.append(f"{path}: {exc}")
