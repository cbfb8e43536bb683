"""Hrefs into structured locations, and back, without secrets.

One parser turns every asset href (after the rewrite rules) into a :class:`Location`: store kind,
bucket or container, key and endpoint. The lock stores these fields, compatible with stacpkg's
``store_type`` / ``store_container`` / ``store_endpoint_url`` / ``key`` columns. Signed query strings
(S3 presigned, Azure SAS, GCS signed, Swift TempURL) are removed before anything is stored, so no
lock, log or error can leak them: stacpkg keeps them in ``store_container`` (its defect 5); we do not.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

from packager.errors import HrefError

#: Query parameters that authorise a request. Their presence makes an href "signed".
SIGNING_PARAMS = frozenset(
    p.lower()
    for p in (
        # AWS SigV4 / SigV2 presigned URLs
        "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
        "X-Amz-Signature", "X-Amz-Security-Token", "AWSAccessKeyId", "Signature", "Expires",
        # Azure SAS tokens
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sr", "skoid", "sktid", "skt", "ske", "sks",
        "skv", "sdd", "si",
        # Google Cloud Storage signed URLs
        "X-Goog-Algorithm", "X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires", "X-Goog-SignedHeaders",
        "X-Goog-Signature", "GoogleAccessId",
        # OpenStack Swift TempURL, generic bearer tokens
        "temp_url_sig", "temp_url_expires", "temp_url_prefix", "token", "access_token", "api_key", "apikey",
    )
)

#: Scheme aliases normalised the way stacpkg normalises them.
SCHEME_ALIASES = {
    "local": "file",
    "s3a": "s3",
    "gcs": "gs",
    "abfs": "az",
    "abfss": "az",
    "azure": "az",
    "adl": "az",
    "webdavs": "webdav+https",
    "webdav": "webdav+http",
}

OBJECT_STORE_KINDS = ("s3", "gs", "az")
#: characters left as they are when a key is quoted into an href (RFC 3986 sub-delims, ':', '@', '/')
_KEY_SAFE = "/:@!$&'()*+,;=~"
#: schemes whose ``x@host`` is not a credential (Azure's ``container@account``); elsewhere userinfo is dropped
_AT_IS_NOT_USERINFO = frozenset(("az", "abfs", "abfss", "azure", "adl"))
SUPPORTED_KINDS = ("file", "s3", "gs", "az", "http", "https", "swift", "webdav+http", "webdav+https")
#: a path that ``quote`` leaves as it is (its always-safe characters and '/'): most keys, checked in ~0.2 µs
_UNQUOTED_PATH = re.compile(r"[A-Za-z0-9_.~/-]*").fullmatch


@dataclass(frozen=True, slots=True)
class Location:
    """Where an object lives, as the lock records it.

    ``kind``: ``file``, ``s3``, ``gs``, ``az``, ``http``, ``https``, ``swift``, ``webdav+http(s)``.
    ``container``: bucket / container; for http(s) and WebDAV the origin ``scheme://host[:port]``;
    ``None`` for files. ``key``: the object key without a leading ``/`` (absolute path for files).
    ``endpoint``: an S3-compatible endpoint URL when not AWS itself.
    """

    kind: str
    container: str | None
    key: str
    endpoint: str | None = None

    def href(self) -> str:
        """The href this location stands for, with no signing query string and no credential."""
        if self.kind == "file":  # validation builds one per row: skip quote() when it would change nothing
            return "file://" + (self.key if _UNQUOTED_PATH(self.key) else quote(self.key))
        if self.kind in ("http", "https"):
            if not self.key:
                return str(self.container)
            path, sep, query = self.key.partition("?")  # harmless params kept by parse_href stay a query
            return f"{self.container}/{quote(path, safe=_KEY_SAFE)}{sep}{query}"
        if self.kind.startswith("webdav+"):
            scheme = "webdavs" if self.kind.endswith("https") else "webdav"
            origin = str(self.container).split("://", 1)[1]
            return f"{scheme}://{origin}/{quote(self.key)}"
        # parse_href unquotes keys, so quote what would not survive a re-parse (%, ?, #, spaces)
        return f"{self.kind}://{self.container}/{quote(self.key, safe=_KEY_SAFE)}"

    def store_identity(self) -> tuple[str, str | None, str | None]:
        """What one store client serves: same kind, container and endpoint share a client."""
        if self.kind == "file":
            return ("file", None, None)
        return (self.kind, self.container, self.endpoint)

    def child(self, relative_key: str) -> Location:
        """The location of ``relative_key`` under this one (a prefix)."""
        base = self.key.rstrip("/")
        key = f"{base}/{relative_key}" if base else relative_key
        return Location(self.kind, self.container, key, self.endpoint)

    def __str__(self) -> str:  # never print anything but the safe href
        return self.href()


@dataclass(frozen=True, slots=True)
class CleanHref:
    """An href with any signing parameters removed, and whether there were any."""

    href: str
    was_signed: bool


def strip_signature(href: str) -> CleanHref:
    """Drop the query parameters that authorise a request; keep the others (``?format=tif``).

    An href that is not even a URL (``http://[broken``) loses its whole query and userinfo part instead,
    so a secret in it is still never shown.
    """
    if "?" not in href and "@" not in href:  # nothing that could sign: the common case, kept cheap
        return CleanHref(href, False)
    try:
        parts = urlsplit(href)
    except ValueError:
        blunt = href.split("?", 1)[0].split("#", 1)[0]
        if "@" in blunt and "://" in blunt:
            scheme, rest = blunt.split("://", 1)
            blunt = f"{scheme}://{rest.rsplit('@', 1)[1]}"
        return CleanHref(blunt, blunt != href)
    signed = False
    if "@" in parts.netloc and parts.scheme.lower() not in _AT_IS_NOT_USERINFO:  # https://user:password@host
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        signed = True
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.lower() not in SIGNING_PARAMS]
        if len(kept) != len(pairs):
            parts = parts._replace(query=urlencode(kept))
            signed = True
    return CleanHref(parts.geturl(), True) if signed else CleanHref(href, False)


def safe_href(href: str) -> str:
    """``href`` as it may be shown in a log or an error: signing parameters removed."""
    if not isinstance(href, str):
        return repr(href)
    return href if "?" not in href and "@" not in href else strip_signature(href).href


def strip_item_signatures(item: dict) -> int:
    """Remove signing parameters from every href of a STAC item, in place; returns how many had one.

    Covers asset hrefs, their ``alternate`` hrefs (alternate-assets extension) and link hrefs. A signed
    href (Planetary Computer SAS ``se=…&sig=…``, S3 ``X-Amz-Signature``, GCS, Swift TempURL, tokens) is a
    short-lived credential: it must not be kept in a package file that may be shared, and the lock
    never reads through it anyway (:func:`parse_href` strips it too; storage profiles carry credentials).
    """
    stripped = 0

    def clean(obj: object) -> None:
        nonlocal stripped
        if isinstance(obj, dict) and isinstance(obj.get("href"), str):
            cleaned = strip_signature(obj["href"])
            if cleaned.was_signed:
                obj["href"] = cleaned.href
                stripped += 1

    assets = item.get("assets")
    for asset in assets.values() if isinstance(assets, dict) else ():
        clean(asset)
        alternates = asset.get("alternate") if isinstance(asset, dict) else None
        for alternate in alternates.values() if isinstance(alternates, dict) else ():
            clean(alternate)
    links = item.get("links")
    for link in links if isinstance(links, list) else ():
        clean(link)
    return stripped


def parse_href(href: str, *, base: str | None = None, endpoint: str | None = None) -> Location:
    """Parse an asset href into a :class:`Location`.

    ``base`` resolves relative hrefs (the item's self href); without one a relative href is an
    error, since resolving it against the working directory would read the wrong file.
    ``endpoint`` is the S3-compatible endpoint to record for ``s3://`` locations.
    """
    if not isinstance(href, str):
        raise HrefError(f"href {href!r} is not a string: an asset's 'href' must be a URL or a path")
    if not href or not href.strip():
        raise HrefError("empty href: every asset needs an 'href'")
    href = strip_signature(href.strip()).href
    if any(ord(c) < 32 or ord(c) == 127 for c in href):
        raise HrefError(f"href {href!r} contains control characters (a newline, a tab...): fix the item's href")
    try:
        parts = urlsplit(href)
    except ValueError as exc:
        raise HrefError(f"href {href!r} is not a valid URL ({exc}): fix the item's href") from None
    scheme = SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if not scheme:
        if href.startswith("/"):  # a plain path, not a URL: '%' and '#' are part of the file name
            return Location("file", None, _normalise_path(href))
        if base is None:
            raise HrefError(
                f"relative href {href!r} has no base to resolve it against: give the item a 'self' link "
                "or make the href absolute"
            )
        try:
            resolved = resolve_relative(safe_href(base), href)
            relative_base = not urlsplit(resolved).scheme and not resolved.startswith("/")
        except ValueError as exc:
            raise HrefError(
                f"relative href {href!r} cannot be resolved against the item's 'self' link {safe_href(base)!r} "
                f"({exc}); fix the self link or make the href absolute"
            ) from None
        if relative_base:
            raise HrefError(
                f"relative href {href!r} cannot be resolved: the item's 'self' link {safe_href(base)!r} is "
                "relative too; make the self link (or the href) absolute"
            )
        return parse_href(resolved, endpoint=endpoint)
    if len(scheme) == 1 and href[1:3] in (":\\", ":/"):  # a Windows drive letter, not a scheme
        raise HrefError(f"href {href!r} is a Windows path; use a file:// URL")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise HrefError(f"file href {href!r} names a host {parts.netloc!r}; use file:///absolute/path")
        return Location("file", None, _normalise_path(unquote(parts.path)))
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise HrefError(f"href {href!r} has no host")
        key = unquote(parts.path).lstrip("/")
        if parts.query:
            key = f"{key}?{parts.query}"
        return Location(scheme, f"{scheme}://{parts.netloc}", key)
    if scheme.startswith("webdav+"):
        inner = scheme.split("+", 1)[1]
        return Location(scheme, f"{inner}://{parts.netloc}", unquote(parts.path).lstrip("/"))
    if scheme in (*OBJECT_STORE_KINDS, "swift"):
        container = parts.netloc
        if scheme == "az" and "@" in container:  # abfs://container@account.dfs.core.windows.net/path
            container, account_host = container.split("@", 1)
            endpoint = endpoint or f"https://{account_host.replace('.dfs.', '.blob.')}"
        if not container:
            raise HrefError(f"href {href!r} names no bucket or container")
        key = unquote(parts.path).lstrip("/")
        return Location(scheme, container, key, endpoint if scheme in ("s3", "az") else None)
    raise HrefError(
        f"href {safe_href(href)!r} has the unsupported scheme {parts.scheme!r}: supported are "
        "file, s3, gs, az (abfs), http(s), swift and webdav(s); add a rewrite rule that maps this "
        "prefix to one of them"
    )


def resolve_relative(base: str, href: str) -> str:
    """``href`` resolved against ``base`` (RFC 3986), for every scheme with a host or bucket.

    :func:`urllib.parse.urljoin` resolves only for schemes it knows (http, file...):
    ``urljoin("s3://bucket/items/a.json", "../data/B01.tif")`` returns the relative href unchanged. The
    base is joined as an https URL with the same authority and path, then given its scheme back.
    """
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https", "file") or not parts.netloc or urlsplit(href).scheme:
        return urljoin(base, href)
    joined = urljoin(urlunsplit(("https", parts.netloc, parts.path, "", "")), href)
    return parts.scheme + joined[len("https"):]


def _normalise_path(path: str) -> str:
    # the common case, ~10x cheaper than normpath (once per lock row on reading): absolute, no empty
    # segment, no segment starting with '.' (so no '.' or '..'), no trailing '/': normpath keeps it as is
    if path[:1] == "/" and path[-1:] != "/" and "//" not in path and "/." not in path:
        return path
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm != "/" else "/"


def location_from_lock_fields(
    store_type: str | None, store_container: str | None, key: str | None, endpoint: str | None
) -> Location:
    """Rebuild a location from the four lock columns (ours or stacpkg's)."""
    if not store_type:
        raise HrefError("lock row has no store_type")
    kind = "file" if store_type == "file" else SCHEME_ALIASES.get(store_type.lower(), store_type.lower())
    if kind == "file":
        if not key:
            raise HrefError("lock row of store_type 'file' has no key")
        path = key if key.startswith("/") else "/" + key
        return Location("file", None, _normalise_path(path))
    if kind not in SUPPORTED_KINDS:
        raise HrefError(f"lock row has the unsupported store_type {store_type!r}")
    if not store_container:
        raise HrefError(f"lock row of store_type {store_type!r} has no store_container")
    if kind in ("http", "https") and (urlsplit(store_container)[2:4] != ("", "") or "@" in store_container):
        # stacpkg stores an href with a query whole in store_container (signature included): re-parse it
        full = store_container + (f"/{key.lstrip('/')}" if key else "")
        return parse_href(full)
    return Location(kind, store_container, (key or "").lstrip("/") if kind != "file" else key or "",
                    endpoint or None)


def extension_of(key: str) -> str:
    """The file extension of a key (``.tif``; ``.tar.gz`` kept whole), or ``""``."""
    name = posixpath.basename(key.split("?", 1)[0]).lstrip(".")
    if "." not in name:
        return ""
    for double in (".tar.gz", ".tar.bz2", ".tar.zst", ".nc.gz"):
        if name.endswith(double):
            return double
    return "." + name.rsplit(".", 1)[1]
