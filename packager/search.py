"""Run a STAC API search and write the items, as the server sent them, to an NDJSON file.

Why it looks like this:

* **Reproducible.** :class:`SearchRequest` validates the request up front (a wrong bbox fails here, with
  the fix, not as a server 400) and :meth:`SearchRequest.as_record` is stored with the package.
* **Durable.** urllib3 retries 429/500/502/503/504 and connection errors for GET *and* POST with
  exponential backoff, honouring ``Retry-After``; the retries actually made are counted.
* **Raw items.** Pages come from ``ItemSearch.pages_as_dicts()``: no pystac migration
  (``proj:epsg`` stays ``proj:epsg``), so the package holds what the API served, with two exceptions:
  signing query parameters are removed from hrefs (a signed URL is a secret with an expiry date, useless
  in a durable package), and an item the API returns again on a later page (data changing while paging)
  is dropped, counted (``duplicates_dropped``) and logged.
* **Atomic.** Items go to a temp file next to ``out_path``, renamed at the end; on any error the temp file
  is removed and ``out_path`` is untouched.
* **No secret leaks.** Headers (API keys, tokens) are added by the HTTP adapter at send time, so they are
  in neither pystac-client's debug log (which prints the session headers), the record, nor any
  exception message; userinfo and query values of the API URL are masked in messages and the record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import cql2
import orjson
import pystac.errors
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.item_search import DATETIME_REGEX
from pystac_client.stac_api_io import StacApiIO
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import RequestException
from urllib3 import Retry

from packager.atomic import atomic_open
from packager.errors import PackagerError
from packager.locations import strip_item_signatures

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
GEOMETRY_TYPES = frozenset(
    {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
)


class SearchError(PackagerError):
    """The search could not be run; the message names the API URL and what to do, never a secret."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


# --------------------------------------------------------------------------------------------------
# The request


class SearchRequest(BaseModel):
    """A STAC API item search, validated before any request is made."""

    model_config = ConfigDict(extra="forbid")

    collections: list[str] | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    datetime: str | None = None
    ids: list[str] | None = None
    filter: str | dict[str, Any] | None = None
    filter_lang: Literal["cql2-text", "cql2-json"] | None = None
    query: dict[str, Any] | None = None
    sortby: str | list[Any] | None = None
    limit: int = Field(100, ge=1, le=10000, description="items per page (1..10000)")
    max_items: int | None = Field(None, ge=1, description="stop after this many items (None: all)")
    method: Literal["POST", "GET"] = "POST"

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) not in (4, 6):
            raise ValueError(
                f"bbox needs 4 numbers [xmin, ymin, xmax, ymax] or 6 [xmin, ymin, zmin, xmax, ymax, zmax] "
                f"in WGS84 degrees, got {len(v)}"
            )
        half = len(v) // 2
        if v[1] > v[1 + half]:
            raise ValueError(f"bbox ymin {v[1]} is greater than ymax {v[1 + half]}: swap them")
        return v

    @field_validator("intersects")
    @classmethod
    def _check_intersects(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if v.get("type") not in GEOMETRY_TYPES:
            raise ValueError(
                f"intersects must be a GeoJSON geometry (type one of {sorted(GEOMETRY_TYPES)}), "
                f"got type {v.get('type')!r}; pass the feature's 'geometry', not the Feature"
            )
        if "coordinates" not in v and "geometries" not in v:
            raise ValueError("intersects geometry has no 'coordinates'")
        return v

    @field_validator("datetime")
    @classmethod
    def _check_datetime(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = v.split("/")
        ok = len(parts) <= 2 and all(p in ("", "..") or DATETIME_REGEX.match(p) for p in parts)
        if not ok or all(p in ("", "..") for p in parts):
            raise ValueError(
                f"datetime {v!r} is not RFC 3339: use '2020-01-01T00:00:00Z', a date '2020-01-01', a range "
                "'2020-01-01/2020-02-01' or open-ended '../2020-02-01'"
            )
        return v

    @field_validator("collections", "ids")
    @classmethod
    def _not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty list matches nothing: leave it out (None) to not restrict")
        return v

    @model_validator(mode="after")
    def _check_combination(self) -> SearchRequest:
        if self.bbox is not None and self.intersects is not None:
            raise ValueError("give either bbox or intersects, not both (the STAC API spec forbids it)")
        if self.filter is None:
            if self.filter_lang is not None:
                raise ValueError("filter_lang is set but filter is not: set filter or drop filter_lang")
            return self
        expected = "cql2-text" if isinstance(self.filter, str) else "cql2-json"
        if self.filter_lang is None:
            self.filter_lang = expected
        elif self.filter_lang != expected:
            raise ValueError(
                f"filter_lang {self.filter_lang!r} does not match the filter given as "
                f"{'text' if isinstance(self.filter, str) else 'a JSON object'}: use {expected!r} or omit it"
            )
        _parse_cql2(self.filter)
        return self

    def as_record(self) -> dict[str, Any]:
        """The request as given (JSON-serialisable, None dropped): ``SearchRequest(**record)`` replays it."""
        return self.model_dump(mode="json", exclude_none=True)


def _parse_cql2(value: str | dict[str, Any]) -> cql2.Expr:
    """Parse a CQL2 filter locally, so a typo fails here with the parser's pointer, not as a server 400."""
    try:
        if isinstance(value, str):
            return cql2.parse_text(value)
        return cql2.parse_json(json.dumps(value))
    except Exception as err:
        raise ValueError(
            f"filter is not valid CQL2 ({'text' if isinstance(value, str) else 'JSON'}): {err}. "
            "Example: \"eo:cloud_cover < 10 AND platform = 'sentinel-2a'\""
        ) from None


def _wire_filter(request: SearchRequest) -> tuple[str | dict[str, Any] | None, str | None]:
    """The filter in the encoding the method needs: POST sends cql2-json, GET sends cql2-text."""
    if request.filter is None:
        return None, None
    expr = _parse_cql2(request.filter)
    if request.method == "POST":
        return dict(expr.to_json()), "cql2-json"
    return str(expr.to_text()), "cql2-text"


def _search_kwargs(request: SearchRequest) -> dict[str, Any]:
    """Keyword arguments for ``Client.search``; None values are left out."""
    params = request.model_dump(exclude_none=True, exclude={"filter", "filter_lang"})
    wire_filter, lang = _wire_filter(request)
    if wire_filter is not None:
        params["filter"] = wire_filter
        params["filter_lang"] = lang
    return params


# --------------------------------------------------------------------------------------------------
# HTTP: retries, secret headers, masking


class _SecretHeaderAdapter(HTTPAdapter):
    """Adds secret headers at send time and counts the retries urllib3 made.

    Headers are added in ``add_headers`` (called inside ``send``), i.e. after pystac-client has logged
    the prepared request, so they never reach a log line.
    """

    def __init__(self, retry: Retry, headers: dict[str, str]) -> None:
        super().__init__(max_retries=retry)
        self._secret_headers = dict(headers)
        self.retries_made = 0

    def add_headers(self, request: PreparedRequest, **kwargs: Any) -> None:
        request.headers.update(self._secret_headers)

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        response = super().send(request, *args, **kwargs)
        history = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
        self.retries_made += len(history)
        return response


def _retry(max_retries: int, backoff_factor: float) -> Retry:
    """GET and POST are both retried: a STAC search POST is a read, safe to repeat."""
    return Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # the final error response reaches pystac-client -> APIError with status
    )


def _stac_io(headers: dict[str, str], max_retries: int, backoff_factor: float, timeout: float):
    io = StacApiIO(timeout=timeout, max_retries=None)
    adapter = _SecretHeaderAdapter(_retry(max_retries, backoff_factor), headers)
    io.session.mount("http://", adapter)
    io.session.mount("https://", adapter)
    return io, adapter


def safe_url(url: str) -> str:
    """The URL with userinfo removed and query values masked: fit for records, logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _url_secrets(url: str) -> list[str]:
    """Password and query values of the URL: masked in messages like header values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    values = [v for _, v in parse_qsl(parts.query) if len(v) >= 4]
    return values + ([parts.password] if parts.password else [])


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --------------------------------------------------------------------------------------------------
# Paging and writing


@dataclass
class SearchSummary:
    """What a search did; ``request`` is stored with the package so it can be re-run."""

    request: dict[str, Any]
    returned: int
    duplicates_dropped: int
    pages: int
    matched: int | None
    retries: int
    """HTTP retries urllib3 made (429/5xx responses and connection errors) over the whole search."""
    seconds: float
    duplicate_ids: list[str] = field(default_factory=list)
    """The first few ``collection/id`` of the items dropped as duplicates (for a report)."""
    signed_hrefs_stripped: int = 0
    """Hrefs whose signing query parameters (SAS, presigned URL) were removed before writing."""


def _matched(page: dict[str, Any]) -> int | None:
    """``numberMatched`` (OGC) or ``context.matched`` (older APIs) from the first page, no extra request."""
    if isinstance(page.get("numberMatched"), int):
        return page["numberMatched"]
    context = page.get("context")
    if isinstance(context, dict) and isinstance(context.get("matched"), int):
        return context["matched"]
    return None


@dataclass
class _Counts:
    returned: int = 0
    duplicates: int = 0
    pages: int = 0
    matched: int | None = None
    duplicate_ids: list[str] = field(default_factory=list)
    signed: int = 0


DUPLICATES_SHOWN = 10


def _write_pages(pages: Iterator[dict[str, Any]], fh: Any, counts: _Counts) -> None:
    """Write each new item as one JSON line; an item already seen (collection, id) is dropped and counted.

    An API pages through data that can change while it pages (an item ingested or re-sorted between two
    requests comes again on a later page): the first copy is kept, later ones are dropped, counted and
    logged. Signing query parameters are removed from every href (a signed URL is a short-lived secret).
    """
    seen: set[tuple[str | None, str]] = set()
    for page in pages:
        counts.pages += 1
        if counts.pages == 1:
            counts.matched = _matched(page)
        for n, item in enumerate(page.get("features") or [], start=1):
            if not isinstance(item, dict) or not item.get("id"):
                raise SearchError(
                    f"page {counts.pages}, feature {n} has no 'id': the API returned something that is not "
                    "a STAC item; check the API or narrow the search"
                )
            key = (item.get("collection"), item["id"])
            if key in seen:
                counts.duplicates += 1
                if len(counts.duplicate_ids) < DUPLICATES_SHOWN:
                    counts.duplicate_ids.append(f"{key[0] or '-'}/{key[1]}")
                logger.warning("page %d: item %s/%s was already returned on an earlier page; dropped",
                               counts.pages, key[0] or "-", key[1])
                continue
            seen.add(key)
            counts.signed += strip_item_signatures(item)
            fh.write(orjson.dumps(item))
            fh.write(b"\n")
            counts.returned += 1
        logger.info("page %d: %d items written so far", counts.pages, counts.returned)


def _reason(err: BaseException) -> str:
    """The innermost cause of a connection failure, e.g. "[Errno 111] Connection refused"."""
    text = str(err)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker)[-1]
    return text.strip(" ()'\"")[:200]


def _error_hint(err: BaseException) -> tuple[str, int | None]:
    """A one-line cause and what to do, from the exception pystac-client/requests raised."""
    status = getattr(err, "status_code", None)
    if isinstance(err, APIError) and status is not None:
        if status in RETRY_STATUSES:
            return f"HTTP {status} even after retries; the API is overloaded or down: retry later", status
        if 400 <= status < 500:
            return (
                f"HTTP {status}: the API rejected the request ({str(err)[:300]}); check the filter, sortby, "
                "query and collections against the API's /conformance and /queryables",
                status,
            )
        return f"HTTP {status}: {str(err)[:300]}", status
    if isinstance(err, RequestException) or (isinstance(err, APIError) and status is None):
        # pystac-client wraps connection errors (after urllib3's retries) in an APIError without status
        return (
            f"cannot reach the API ({_reason(err)}); check the URL, the network and that the API is up",
            None,
        )
    if isinstance(err, NotImplementedError):
        return f"{err}; this endpoint does not offer item search", None
    return f"{type(err).__name__}: {str(err)[:300]}; is this the landing page URL of a STAC API?", None


def search_to_ndjson(
    api_url: str,
    request: SearchRequest,
    out_path: Path,
    *,
    headers: dict[str, str] | None = None,
    max_retries: int = 5,
    backoff_factor: float = 0.5,
    timeout: float = 60,
) -> SearchSummary:
    """Page through a STAC API search and write the items, one JSON per line, atomically to ``out_path``.

    Raises :class:`SearchError` (naming the API URL, never a header value) when the API cannot be reached,
    keeps failing, or rejects the request.
    """
    out_path = Path(out_path)
    headers = dict(headers or {})
    secrets = [v for v in headers.values() if v] + _url_secrets(api_url)
    shown_url = safe_url(api_url)
    io, adapter = _stac_io(headers, max_retries, backoff_factor, timeout)
    counts = _Counts()
    started = time.perf_counter()
    try:
        client = Client.open(api_url, stac_io=io)
        search = client.search(**_search_kwargs(request))
        sent = search.get_parameters()
        with atomic_open(out_path) as fh:
            _write_pages(search.pages_as_dicts(), fh, counts)
    except SearchError as err:
        raise SearchError(_redact(f"STAC search at {shown_url}: {err}", secrets)) from None
    except (
        APIError,
        RequestException,
        NotImplementedError,
        ValueError,
        KeyError,
        TypeError,
        pystac.errors.STACError,
        pystac.errors.STACTypeError,
    ) as err:
        hint, status = _error_hint(err)
        message = _redact(f"STAC search at {shown_url} failed: {hint}", secrets)
        raise SearchError(message, status_code=status) from None
    finally:
        io.session.close()
    return SearchSummary(
        request={**request.as_record(), "api_url": shown_url, "sent_parameters": _json_safe(sent)},
        returned=counts.returned,
        duplicates_dropped=counts.duplicates,
        pages=counts.pages,
        matched=counts.matched,
        retries=adapter.retries_made,
        seconds=round(time.perf_counter() - started, 3),
        duplicate_ids=counts.duplicate_ids,
        signed_hrefs_stripped=counts.signed,
    )


def _json_safe(value: Any) -> Any:
    """pystac-client's parameters, round-tripped through JSON (tuples -> lists, floats kept)."""
    return json.loads(json.dumps(value, default=str))


__all__ = ["SearchError", "SearchRequest", "SearchSummary", "safe_url", "search_to_ndjson"]
