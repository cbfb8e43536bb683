"""Typed errors of the engine.

Every error carries a message that names what was wrong and how to mend it, and never a secret: the
locations they name are rendered with :meth:`packager.locations.Location.href`, which holds no query
string or credential.
"""

from __future__ import annotations


class PackagerError(Exception):
    """Base class: anything the engine raises on purpose."""


class ConfigError(PackagerError, ValueError):
    """A setting is wrong; the message names the setting and the fix."""

    code = "config"


class HrefError(PackagerError, ValueError):
    """An asset href cannot be turned into a location (unknown scheme, relative without a base...)."""

    code = "bad_href"


class StoreError(PackagerError):
    """An object store operation failed. ``retryable`` tells the caller whether trying again can help."""

    code = "store_error"
    retryable = False

    def __init__(self, message: str, *, href: str | None = None) -> None:
        super().__init__(message)
        self.href = href


class ObjectNotFound(StoreError):
    code = "not_found"


class AccessDenied(StoreError):
    code = "access_denied"


class TransientStoreError(StoreError):
    code = "transient"
    retryable = True


class DuplicateAssetError(PackagerError, ValueError):
    """Two rows share (collection, item id, asset key): the lock's identity must be unique."""


class LockSchemaError(PackagerError, ValueError):
    """A lock file does not have the columns a lock needs."""


class TemplateError(PackagerError, ValueError):
    """A destination-key template is unusable: unknown field, escapes the prefix, or makes keys collide."""


class RowFailures(PackagerError):
    """Some rows of a batch job failed; all rows were attempted first. ``failures`` holds them."""

    def __init__(self, message: str, failures: list[dict]) -> None:
        super().__init__(message)
        self.failures = failures


#: Errors that concern one row of a batch (its href, its store, its object): batch jobs record them as
#: that row's failure and go on with the others, instead of aborting the whole run.
ROW_ERRORS: tuple[type[Exception], ...] = (StoreError, HrefError, ConfigError)
