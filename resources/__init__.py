"""Dagster resources: thin adapters that turn config and ``EnvVar`` secrets into engine objects.

Nothing here does I/O on its own; the engine in ``packager`` does. Secrets arrive as ``EnvVar``
values, are handed to the engine as ``SecretStr`` and never reach metadata or logs.
"""

from resources.keystore import KeystoreResource
from resources.package import PackageResource
from resources.partitions import PartitionsResource
from resources.stac_api import SearchSpec, StacApiResource
from resources.storage import (
    BucketOverrideConfig,
    RewriteResource,
    RewriteRuleConfig,
    StorageProfileConfig,
    StorageResource,
)

__all__ = [
    "BucketOverrideConfig",
    "KeystoreResource",
    "PackageResource",
    "PartitionsResource",
    "RewriteResource",
    "RewriteRuleConfig",
    "SearchSpec",
    "StacApiResource",
    "StorageProfileConfig",
    "StorageResource",
]
