"""Small stand-in bytes for the assets of the demo items, and the rewrite rules that point at them.

The demo items (``demo/data/items.ndjson``) are real catalogue entries whose hrefs stay exactly as
published (``https://sentinel2l2a01.blob.core.windows.net/...``, ``s3://eodata/...``). The demo runs
offline, so it writes a few KiB of deterministic pseudo-random bytes for every asset under a local
source folder and hands the packager rewrite rules that map each published prefix there::

    https://<host>/...      ->  file://<source>/<host>/...
    s3://<bucket>/...       ->  file://<source>/s3/<bucket>/...   (any other scheme: <source>/<scheme>/<netloc>/)

The stand-in for an href is a pure function of the href (content: SHAKE-256 of the href; size:
4-64 KiB from its SHA-256), so reruns write identical files and a rerun skips files that are
already there with the right size. Plain Python, no Dagster: ``python demo/standins.py SOURCE_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

DATA_DIR = Path(__file__).resolve().parent / "data"
ITEMS_FILE = DATA_DIR / "items.ndjson"
COLLECTIONS_DIR = DATA_DIR / "collections"

# Asset keys that are API endpoints rather than files. In the demo items these are the Planetary
# Computer data-API links on every PC item (landsat-c2-l2, naip, sentinel-1-grd, sentinel-2-l2a):
#   rendered_preview  https://planetarycomputer.microsoft.com/api/data/v1/item/preview.png?collection=...
#   tilejson          https://planetarycomputer.microsoft.com/api/data/v1/item/tilejson.json?collection=...
# Both are rendered on request (query-string parameters choose bands and colour formula), so there
# is no object to lock or copy. The CDSE item's OData links (``Product``: the zipped SAFE, and
# ``thumbnail``) do name stored files with a published ``file:size``, so they are kept.
DEMO_EXCLUDED_ASSET_KEYS: frozenset[str] = frozenset({"rendered_preview", "tilejson"})

MIN_SIZE = 4 * 1024
MAX_SIZE = 64 * 1024
_SALT = b"stac-packager demo stand-in\x00"


@dataclass
class StandinSummary:
    """What :func:`write_standins` did."""

    items: int = 0
    assets: int = 0  # every asset of every item
    excluded: int = 0  # assets skipped because their key is excluded
    files: int = 0  # stand-in files that exist now (written + already there)
    written: int = 0
    skipped: int = 0  # already present with the right size
    bytes_total: int = 0  # bytes of all stand-in files
    bytes_written: int = 0
    seconds: float = 0.0
    hosts: list[str] = field(default_factory=list)  # see rewrite_rules_for
    schemes: dict[str, int] = field(default_factory=dict)  # non-excluded assets per href scheme
    non_https: list[str] = field(default_factory=list)  # "collection/item/asset: href", mapped too

    def describe(self) -> str:
        mib = self.bytes_total / (1 << 20)
        return (
            f"{self.items} items, {self.assets} assets ({self.excluded} excluded as API endpoints): "
            f"{self.files} stand-in files, {mib:.1f} MiB ({self.written} written, {self.skipped} already there) "
            f"in {self.seconds:.2f} s; schemes {self.schemes}; sources {', '.join(self.hosts)}"
        )


def iter_items(items_path: Path | str) -> Iterator[dict]:
    """The items of an ndjson file, one per non-empty line."""
    with open(items_path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def asset_hrefs(items_path: Path | str) -> Iterator[tuple[str | None, str, str, str]]:
    """``(collection, item_id, asset_key, href)`` for every asset of every item, in file order."""
    for item in iter_items(items_path):
        for key, asset in (item.get("assets") or {}).items():
            yield item.get("collection"), item["id"], key, asset["href"]


def source_of(href: str) -> str:
    """The source an href is served from, as :func:`rewrite_rules_for` takes it.

    A bare host for ``https`` (``sentinel2l2a01.blob.core.windows.net``), ``scheme://netloc`` for
    anything else (``s3://eodata``, ``http://example.com``). Relative hrefs have no source.
    """
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        raise ValueError(f"href {href!r} is not an absolute URL with a host or bucket; no stand-in for it")
    if parts.netloc in (".", "..") or "/" in parts.netloc or "\\" in parts.netloc:
        raise ValueError(f"href {href!r}: refusing host {parts.netloc!r}")
    return parts.netloc if scheme == "https" else f"{scheme}://{parts.netloc}"


def _source_dir_name(source: str) -> str:
    """The folder under the source dir for a source: ``host`` or ``scheme/netloc``."""
    if "://" in source:
        scheme, netloc = source.split("://", 1)
        return f"{scheme}/{netloc}"
    return source


def standin_path(href: str, source_dir: Path | str) -> Path:
    """Where the stand-in of ``href`` lives: ``source_dir/<host>/<URL-decoded path>``.

    This is the path :func:`packager.locations.parse_href` gives the rewritten ``file://`` href
    (it URL-decodes the path and ignores a query string). ``.``/``..`` segments are refused.
    """
    source = source_of(href)
    path = unquote(urlsplit(href).path)
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ValueError(f"href {href!r} names no object (empty path)")
    bad = [s for s in segments if s in (".", "..") or "\x00" in s]
    if bad:
        raise ValueError(
            f"href {href!r} has a '.', '..' or NUL path segment: refusing to write outside the source"
        )
    return Path(source_dir, *_source_dir_name(source).split("/"), *segments)


def standin_size(href: str) -> int:
    """4-64 KiB, from the href's SHA-256."""
    digest = hashlib.sha256(_SALT + href.encode()).digest()
    return MIN_SIZE + int.from_bytes(digest[:8], "big") % (MAX_SIZE - MIN_SIZE + 1)


def standin_bytes(href: str) -> bytes:
    """The stand-in content of ``href``: SHAKE-256 of the href, :func:`standin_size` bytes."""
    return hashlib.shake_256(_SALT + href.encode()).digest(standin_size(href))


def write_standins(
    items_path: Path | str,
    source_dir: Path | str,
    *,
    excluded: Collection[str] = DEMO_EXCLUDED_ASSET_KEYS,
) -> StandinSummary:
    """Write a stand-in file for every non-excluded asset of the items under ``source_dir``.

    Idempotent: a file already there with the right size is left alone. Files are written to a
    temporary name and renamed, so an interrupted run never leaves a short file with a final name.
    Raises ``ValueError`` for an href that cannot be mapped (relative, ``..``), before writing anything.
    """
    t0 = time.monotonic()
    source_dir = Path(source_dir)
    summary = StandinSummary()
    plan: dict[Path, str] = {}
    hosts: set[str] = set()
    schemes: Counter[str] = Counter()
    items: set[tuple[str | None, str]] = set()
    for collection, item_id, key, href in asset_hrefs(items_path):
        items.add((collection, item_id))
        summary.assets += 1
        if key in excluded:
            summary.excluded += 1
            continue
        path = standin_path(href, source_dir)
        previous = plan.setdefault(path, href)
        if previous != href:  # two hrefs differing only in query string or encoding
            raise ValueError(f"hrefs {previous!r} and {href!r} map to the same stand-in {path}")
        hosts.add(source_of(href))
        scheme = urlsplit(href).scheme.lower()
        schemes[scheme] += 1
        if scheme != "https":
            summary.non_https.append(f"{collection}/{item_id}/{key}: {href}")
    summary.items = len(items)
    for path, href in plan.items():
        size = standin_size(href)
        summary.files += 1
        summary.bytes_total += size
        try:
            if path.stat().st_size == size:
                summary.skipped += 1
                continue
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(standin_bytes(href))
        os.replace(tmp, path)
        summary.written += 1
        summary.bytes_written += size
    summary.hosts = sorted(hosts)
    summary.schemes = dict(sorted(schemes.items()))
    summary.seconds = time.monotonic() - t0
    return summary


def rewrite_rules_for(hosts: Iterable[str], source_dir: Path | str) -> list[dict]:
    """Rewrite rules sending each source to its stand-in folder (absolute ``file://`` URLs).

    ``hosts``: bare hosts (``https``) or ``scheme://netloc`` (:func:`source_of`), e.g.
    ``"sentinel2l2a01.blob.core.windows.net"`` -> ``https://sentinel2l2a01.blob.core.windows.net/`` ->
    ``file:///abs/source/sentinel2l2a01.blob.core.windows.net/``; ``"s3://eodata"`` ->
    ``s3://eodata/`` -> ``file:///abs/source/s3/eodata/``. The source folder is percent-encoded.
    """
    base = Path(source_dir).resolve()
    rules = []
    for host in hosts:
        prefix = f"{host}/" if "://" in host else f"https://{host}/"
        folder = base.joinpath(*_source_dir_name(host).split("/"))
        rules.append({"prefix": prefix, "replacement": folder.as_uri() + "/"})
    return rules


def main(argv: list[str] | None = None) -> int:
    """``python demo/standins.py SOURCE_DIR [ITEMS]``: write the stand-ins, print the rules as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python demo/standins.py SOURCE_DIR [ITEMS.ndjson]", file=sys.stderr)
        return 2
    items = Path(args[1]) if len(args) > 1 else ITEMS_FILE
    summary = write_standins(items, args[0])
    print(summary.describe(), file=sys.stderr)
    print(json.dumps(rewrite_rules_for(summary.hosts, args[0]), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
