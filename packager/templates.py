"""Destination keys for relocated objects, checked before a single byte moves.

A template such as ``{collection}/{item_id}/{asset_key}{ext}`` is rendered per lock row. A rendered key
that would leave the target prefix (``..``, an absolute path, empty or ``.`` segments), that holds a
backslash or a control character, whose whole is longer than 1,024 bytes (S3, GCS, Azure and Swift
limit) or one of whose segments is longer than 255 bytes (the name limit of local filesystems and
WebDAV servers), or that two rows share, is refused for the whole batch up front: stacpkg's sanitising
made ``a/b`` and ``a_b`` collide and overwrote data (its defect 6); refusing is the only safe answer.
Two keys that differ only in Unicode normalisation (``é`` as one code point, NFC, or as ``e`` + a
combining accent, NFD) collide too: filesystems that normalise names (macOS) would store them as one.
Ids with ``/`` are allowed: they only make the key deeper, inside the target.
"""

from __future__ import annotations

import posixpath
import string
import unicodedata
from collections.abc import Iterable, Iterator

from packager.errors import TemplateError
from packager.locations import Location, extension_of
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
"""Bytes (UTF-8) of a whole object key: S3, GCS, Azure blob names and Swift object names."""
MAX_SEGMENT_LENGTH = 255
"""Bytes (UTF-8) of one path segment: a file or folder name on ext4, XFS, APFS, NTFS and WebDAV servers."""
MAX_PATH_LENGTH = 4095
"""Bytes of a whole local path (Linux PATH_MAX less the terminating NUL)."""
OBJECT_STORE_KINDS = ("s3", "gs", "az", "swift")
MAX_REPORTED = 10
MEND = "change the template (--key-template / relocation.key_template) or the offending id or asset key"


def _show(text: str, limit: int = 80) -> str:
    """``text`` for a message: repr, cut to ``limit`` characters with its byte length when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text.encode())} bytes)"


class KeyTemplate:
    """A validated destination-key template."""

    def __init__(self, template: str = DEFAULT_TEMPLATE) -> None:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        except ValueError as exc:  # an unmatched '{' or '}'
            raise TemplateError(f"destination template {template!r} is malformed ({exc}); write fields as "
                                "{item_id} and a literal brace as {{ or }}") from None
        unknown = sorted({n for n in names if n not in FIELDS})
        if unknown:
            raise TemplateError(
                f"destination template {template!r} uses unknown field(s) {', '.join(unknown)}; "
                f"available: {', '.join('{' + f + '}' for f in FIELDS)}"
            )
        if not names:
            raise TemplateError(f"destination template {template!r} has no field: every asset would get one key")
        self.template = template
        try:  # the template's own text must not leave the target, whatever the ids are
            sample = template.format(**dict.fromkeys(FIELDS, "f"))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise TemplateError(f"destination template {template!r} cannot be rendered ({exc})") from None
        try:
            check_relative_key(sample)
        except TemplateError as exc:
            raise TemplateError(
                f"destination template {template!r} is refused before any byte moves: every key it makes would "
                f"leave the target or be unusable ({str(exc).removesuffix(f'; {MEND}')}). Write a relative "
                f"template such as {DEFAULT_TEMPLATE!r}"
            ) from None

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
    """Refuse keys that could escape the target prefix or that object stores or filesystems treat badly."""
    where = f" (asset {_show(row.label())})" if row else ""
    shown = _show(key)
    if not key or key.startswith("/"):
        raise TemplateError(f"destination key {shown}{where} is empty or absolute and would not stay under the "
                            f"target; {MEND}")
    if "\\" in key:
        raise TemplateError(f"destination key {shown}{where} has a backslash, a path separator on Windows and "
                            f"some servers; {MEND}")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise TemplateError(
            f"destination key {shown}{where} has an empty, '.' or '..' path segment and could escape the "
            f"target prefix; {MEND}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise TemplateError(f"destination key {shown}{where} contains control characters; {MEND}")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_LENGTH:
        raise TemplateError(f"destination key {shown}{where} is {size} bytes (UTF-8), over the limit of "
                            f"{MAX_KEY_LENGTH} bytes for an object key; {MEND}")
    long = next((s for s in segments if len(s.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_LENGTH), None)
    if long is not None:
        raise TemplateError(
            f"destination key {shown}{where} has a path segment of {len(long.encode('utf-8', 'surrogatepass'))} "
            f"bytes ({_show(long, 40)}), over the limit of {MAX_SEGMENT_LENGTH} bytes for a file name; {MEND}"
        )


def check_destination(target: Location, key: str, row: LockRow | None = None) -> None:
    """The limits of the target's store on the whole key (target prefix + relative key)."""
    full = target.child(key).key
    size = len(full.encode("utf-8", "surrogatepass"))
    limit = MAX_KEY_LENGTH if target.kind in OBJECT_STORE_KINDS else MAX_PATH_LENGTH if target.kind == "file" else None
    if limit is not None and size > limit:
        where = f" (asset {_show(row.label())})" if row else ""
        raise TemplateError(
            f"destination {_show(full)}{where} is {size} bytes with the target prefix, over the "
            f"{'object key' if limit == MAX_KEY_LENGTH else 'path'} limit of {limit} bytes of {target.kind}; "
            f"choose a shorter target prefix or {MEND}"
        )


def plan_keys(rows: Iterable[LockRow], template: KeyTemplate,
              target: Location | None = None) -> Iterator[tuple[LockRow, str]]:
    """Render every row's key; raise once for all escapes and collisions found, before any copy.

    With ``target``, the whole destination (target prefix + key) is also checked against that store's
    length limit (:func:`check_destination`).
    """
    owners: dict[str, tuple[str, str]] = {}
    collisions: list[str] = []
    errors: list[str] = []
    planned: list[tuple[LockRow, str]] = []
    for row in rows:
        try:
            key = template.render(row)
            if target is not None:
                check_destination(target, key, row)
        except TemplateError as exc:
            errors.append(str(exc).removesuffix(f"; {MEND}"))
            continue
        normal = unicodedata.normalize("NFC", key)
        if normal in owners:  # even two rows with one label (a stacpkg lock has no collection) must not share a key
            owner, owner_key = owners[normal]
            note = "" if owner_key == key else (f" (the same name once Unicode-normalised, NFC vs NFD: "
                                                 f"{ascii(owner_key)} vs {ascii(key)})")
            collisions.append(f"{owner} and {row.label()} -> {key if len(key) <= 80 else _show(key)}"
                              f"{note}")
        else:
            owners[normal] = (row.label(), key)
        planned.append((row, key))
    if errors or collisions:
        parts = []
        for count, name, found in ((len(errors), "key(s) refused", errors), (len(collisions), "collision(s)", collisions)):
            if found:
                more = f"; and {count - MAX_REPORTED} more" if count > MAX_REPORTED else ""
                parts.append(f"{count} {name}: " + "; ".join(found[:MAX_REPORTED]) + more)
        raise TemplateError(
            f"destination template {template.template!r} is unusable, nothing was copied: " + " | ".join(parts)
            + f". To mend: {MEND}; include {{collection}}, {{item_id}} and {{asset_key}} so every asset gets its "
            "own key."
        )
    return iter(planned)
