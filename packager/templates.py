"""Destination keys for relocated objects, checked before a single byte moves.

A template such as ``{collection}/{item_id}/{asset_key}{ext}`` is rendered per lock row. A rendered key
that would leave the target prefix (``..``, an absolute path, empty or ``.`` segments) or that two
rows share is refused for the whole batch up front: stacpkg's sanitising made ``a/b`` and ``a_b``
collide and overwrote data (its defect 6); refusing is the only safe answer.
"""

from __future__ import annotations

import posixpath
import string
from collections.abc import Iterable, Iterator

from packager.errors import TemplateError
from packager.locations import extension_of
from packager.lock import LockRow

DEFAULT_TEMPLATE = "{collection}/{item_id}/{asset_key}{ext}"
FIELDS = {
    "collection": "the item's collection id ('_' when it has none)",
    "item_id": "the STAC item id",
    "asset_key": "the key of the asset in item.assets",
    "ext": "the source key's extension with its dot ('.tif'), or ''",
    "filename": "the last path segment of the source key",
    "source_key": "the whole source key (bucket-relative path)",
    "source_container": "the source bucket, container or host",
}
MAX_KEY_LENGTH = 1024
MAX_REPORTED = 5


class KeyTemplate:
    """A validated destination-key template."""

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        unknown = sorted({n for n in names if n not in FIELDS})
        if unknown:
            raise TemplateError(
                f"destination template {template!r} uses unknown field(s) {', '.join(unknown)}; "
                f"available: {', '.join('{' + f + '}' for f in FIELDS)}"
            )
        if not names:
            raise TemplateError(f"destination template {template!r} has no field: every asset would get one key")
        self.template = template

    def render(self, row: LockRow) -> str:
        source_key = row.location.key
        key = self.template.format(
            collection=row.collection or "_", item_id=row.item_id, asset_key=row.asset_key,
            ext=extension_of(source_key), filename=posixpath.basename(source_key.split("?", 1)[0]),
            source_key=source_key.split("?", 1)[0], source_container=(row.location.container or "").split("://")[-1],
        )
        check_relative_key(key, row)
        return key


def check_relative_key(key: str, row: LockRow | None = None) -> None:
    """Refuse keys that could escape the target prefix or that object stores treat badly."""
    where = f" (asset {row.label()})" if row else ""
    if not key or key.startswith("/") or "\\" in key:
        raise TemplateError(f"destination key {key!r}{where} is empty, absolute or has a backslash")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise TemplateError(
            f"destination key {key!r}{where} has an empty, '.' or '..' path segment and could escape the "
            "target prefix; change the template or the offending id"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise TemplateError(f"destination key {key!r}{where} contains control characters")
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise TemplateError(f"destination key of {len(key.encode())} bytes{where} exceeds {MAX_KEY_LENGTH} bytes")


def plan_keys(rows: Iterable[LockRow], template: KeyTemplate) -> Iterator[tuple[LockRow, str]]:
    """Render every row's key; raise once for all escapes and collisions found, before any copy."""
    owners: dict[str, str] = {}
    collisions: list[str] = []
    errors: list[str] = []
    planned: list[tuple[LockRow, str]] = []
    for row in rows:
        try:
            key = template.render(row)
        except TemplateError as exc:
            errors.append(str(exc))
            continue
        if key in owners:  # even two rows with one label (a stacpkg lock has no collection) must not share a key
            collisions.append(f"{owners[key]} and {row.label()} -> {key}")
        else:
            owners[key] = row.label()
        planned.append((row, key))
    if errors or collisions:
        parts = []
        if errors:
            parts.append(f"{len(errors)} key(s) refused: " + "; ".join(errors[:MAX_REPORTED]))
        if collisions:
            parts.append(f"{len(collisions)} collision(s): " + "; ".join(collisions[:MAX_REPORTED]))
        raise TemplateError(
            f"destination template {template.template!r} is unusable, nothing was copied: " + " | ".join(parts)
            + ". Include {collection}, {item_id} and {asset_key} so every asset gets its own key."
        )
    return iter(planned)
