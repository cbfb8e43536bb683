"""Deployment settings: one YAML file (or embedded defaults) that becomes the Dagster resources.

The file is named by ``STAC_PACKAGER_CONFIG``; the Helm chart mounts it from a ConfigMap. Secrets are
never values in it: they are ``{env: NAME}`` references, turned into ``dg.EnvVar("NAME")`` so
Dagster resolves them at run time and shows only the variable's name in the UI.

```yaml
stac_api: {url: https://earth-search.aws.element84.com/v1, headers: {Authorization: {env: STAC_TOKEN}}}
search: {collections: [sentinel-2-l2a], bbox: [11.0, 46.0, 11.5, 46.5], datetime: "2024-06-01/2024-06-03"}
package: {url: s3://my-bucket/packages/alps, checksum: true, exclude_asset_keys: [rendered_preview]}
relocation: {target: s3://my-bucket/assets, key_template: "{collection}/{item_id}/{asset_key}{ext}"}
validation: {deep: false, max_age_hours: 24, sensor_interval_seconds: 300}   # revalidation sensor
partitions: {kind: daily, start: "2024-01-01", timezone: UTC, schedule: {hour: 3, lag: 1}}  # or monthly; none
# ... and/or by area (name -> bbox or GeoJSON geometry) or by collection; a string instead names a file
# (path or URL) listing them: dynamic partitions that the sensor sync_partitions keeps in step with it
#   partitions: {kind: daily, areas: {alps: [5.9, 45.8, 10.5, 47.8], pyrenees: [-1.8, 42.3, 3.3, 43.3]}}
#   partitions: {collections: [sentinel-2-l2a, landsat-c2-l2]}    partitions: {areas: s3://ops/areas.yaml}
retries: {max_retries: 3, delay: 5, backoff: exponential}                          # I/O assets
storage:
  profiles:
    - {name: mine, url: s3://my-bucket, region: eu-central-1,
       access_key_id: {env: MY_KEY_ID}, secret_access_key: {env: MY_SECRET}}
rewrite:
  rules: [{prefix: "https://sentinel-cogs.s3.us-west-2.amazonaws.com/", replacement: "s3://sentinel-cogs/"}]
  buckets: [{bucket: sentinel-cogs, region: us-west-2, skip_signature: true}]
keystore:   # optional: profiles then say `keystore_key: NAME` instead of carrying credentials
  {url: s3://my-bucket/keystore.json, private_key: {env: STAC_PACKAGER_KEYSTORE_PRIVATE_KEY},
   passphrase: {env: STAC_PACKAGER_KEYSTORE_PASSPHRASE}}   # or private_key_file: /secrets/keystore/private-key
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from packager.errors import ConfigError
from resources import (
    BucketOverrideConfig,
    KeystoreResource,
    PackageResource,
    PartitionsResource,
    RewriteResource,
    RewriteRuleConfig,
    SearchSpec,
    StacApiResource,
    StorageProfileConfig,
    StorageResource,
)
from resources.partitions import check_partition_name, parse_area

CONFIG_ENV = "STAC_PACKAGER_CONFIG"
DEFAULT_STAC_API = "https://earth-search.aws.element84.com/v1"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StacApiSettings(_Section):
    url: str = DEFAULT_STAC_API
    headers: dict[str, Any] = Field(default_factory=dict)
    max_retries: int = 5


class PackageSettings(_Section):
    url: str = "package"
    checksum: bool = False
    include_asset_keys: list[str] | None = None
    exclude_asset_keys: list[str] = Field(default_factory=list)
    lock_concurrency: int = 32
    workdir: str | None = None


class RelocationSettingsFile(_Section):
    target: str = "relocated"
    key_template: str | None = None
    alternate_name: str = "mirror"
    concurrency: int = 16
    memory_limit_mib: int = 256
    chunk_size_mib: int = 8
    put_concurrency: int = 4
    verify: str = "checksum"


class ValidationSettings(_Section):
    deep: bool = False
    max_age_hours: float = Field(default=24.0, gt=0, description="Revalidate a package whose last validation "
                                                                  "report is older than this.")
    sensor_interval_seconds: int = Field(default=300, ge=1, description="How often the revalidation sensor looks.")


class ScheduleSettings(_Section):
    """When the schedule packages a past partition (in ``partitions.timezone``), and which one."""

    enabled: bool = True
    hour: int = Field(default=3, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    cron: str | None = Field(default=None, description="A cron string instead of hour and minute, e.g. "
                                                        "'0 */6 * * *'; the partition still follows lag.")
    lag: int = Field(default=1, ge=1, description="Package the partition this many before the one the tick "
                                                  "falls in: 1 is the previous day or month; more waits for "
                                                  "catalogs that publish items late.")


class PartitionSettings(_Section):
    """How the chain is partitioned: by acquisition time (``kind``), by area or by collection, or both.

    ``areas`` maps names to a bbox ``[w, s, e, n]`` or a GeoJSON geometry; ``collections`` lists collection
    ids. Either one becomes a second dimension next to the time (a multi-partition ``area|date``), or the
    only one when ``kind`` is ``none``. Given as a string, it names a YAML file (path or URL, read through
    the storage profiles) holding that mapping or list: dynamic partitions, which the ``sync_partitions``
    sensor adds (and removes) as the file changes.
    """

    kind: Literal["none", "daily", "monthly"] = "none"
    start: str = "2020-01-01"
    end: str | None = None
    timezone: str = "UTC"
    end_offset: int = 0
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    areas: dict[str, list[float] | dict[str, Any]] | str | None = None
    collections: list[str] | str | None = None
    sync_interval_seconds: int = Field(default=60, ge=1, description="How often sync_partitions reads the file "
                                                                     "of dynamic areas or collections.")

    @field_validator("areas")
    @classmethod
    def _check_areas(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                raise ValueError("name at least one area, or leave areas out")
            for name, area in value.items():
                check_partition_name(name)
                parse_area(area, name)
        return value

    @field_validator("collections")
    @classmethod
    def _check_collections(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("name at least one collection, or leave collections out")
            for name in value:
                check_partition_name(name)
            if len(set(value)) != len(value):
                raise ValueError("a collection is listed twice")
        return value

    @model_validator(mode="after")
    def _one_dimension(self) -> PartitionSettings:
        if self.areas is not None and self.collections is not None:
            raise ValueError("partition by areas or by collections, not both (Dagster partitions have at most "
                             "two dimensions, and one is the time)")
        return self

    @property
    def dimension(self) -> Literal["area", "collection"] | None:
        """The partition dimension besides the time, if any."""
        if self.areas is not None:
            return "area"
        return "collection" if self.collections is not None else None

    @property
    def source(self) -> str | None:
        """The file of dynamic areas or collections, if they are dynamic."""
        value = self.areas if self.areas is not None else self.collections
        return value if isinstance(value, str) else None


class RetrySettings(_Section):
    """Dagster retries of the I/O assets (on top of the engine's per-request retries)."""

    max_retries: int = Field(default=3, ge=0)
    delay: float = Field(default=5.0, ge=0, description="Seconds before the first retry.")
    backoff: Literal["exponential", "linear", "none"] = "exponential"


class StorageSettings(_Section):
    profiles: list[dict[str, Any]] = Field(default_factory=list)


class KeystoreSettings(_Section):
    """The encrypted keystore profiles name keys of (``keystore_key``); its private key only as ``{env: NAME}``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    url: str = Field(description="The keystore file: a path or a URL ('s3://bucket/keystore.json').")
    private_key: dict[str, str] | None = Field(default=None, description="{env: NAME} holding the private key PEM.")
    private_key_file: str | None = Field(default=None, description="Or a file with the PEM (a mounted Secret).")
    passphrase: dict[str, str] | None = Field(default=None, description="{env: NAME} holding its passphrase.")

    @field_validator("private_key", "passphrase", mode="before")
    @classmethod
    def _env_only(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, dict) and set(value) == {"env"}):
            raise ValueError("must be an {env: NAME} reference, never the secret itself")
        return value


class RewriteSettings(_Section):
    rules: list[dict[str, Any]] = Field(default_factory=list)
    buckets: list[dict[str, Any]] = Field(default_factory=list)


class Settings(_Section):
    """The whole settings file; every section is optional and has a working default."""

    stac_api: StacApiSettings = Field(default_factory=StacApiSettings)
    search: dict[str, Any] = Field(default_factory=lambda: {"limit": 100, "max_items": 100})
    package: PackageSettings = Field(default_factory=PackageSettings)
    relocation: RelocationSettingsFile = Field(default_factory=RelocationSettingsFile)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    rewrite: RewriteSettings = Field(default_factory=RewriteSettings)
    partitions: PartitionSettings = Field(default_factory=PartitionSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    keystore: KeystoreSettings | None = None


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Settings from ``path``, else from the file named by ``STAC_PACKAGER_CONFIG``, else the defaults."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return Settings()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist (from {CONFIG_ENV}); fix the path or unset it") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"settings file {path} is not valid YAML: {exc}") from None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"settings file {path}: {problems}") from None


def _env_refs(value: Any) -> Any:
    """``{env: NAME}`` -> ``dg.EnvVar("NAME")``, recursively; anything else unchanged."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return dg.EnvVar(str(value["env"]))
        return {k: _env_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_refs(v) for v in value]
    return value


def _search_spec(search: dict[str, Any]) -> SearchSpec:
    values = dict(search)
    for name in ("intersects", "query"):
        if isinstance(values.get(name), dict):
            values[name] = json.dumps(values[name])
    if isinstance(values.get("filter"), dict):
        values["filter"] = json.dumps(values["filter"])
    return SearchSpec(**values)


def _absolute(url_or_path: str) -> str:
    return url_or_path if "://" in url_or_path else os.path.abspath(url_or_path)


def _keystore(keystore: KeystoreSettings | None) -> KeystoreResource | None:
    if keystore is None:
        return None
    return KeystoreResource(url=_absolute(keystore.url), private_key=_env_refs(keystore.private_key),
                            private_key_file=keystore.private_key_file, passphrase=_env_refs(keystore.passphrase))


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources every asset of the chain takes, built from one settings value."""
    relocation = settings.relocation
    package_kwargs: dict[str, Any] = {
        "url": _absolute(settings.package.url), "relocation_target": _absolute(relocation.target),
        "alternate_name": relocation.alternate_name, "checksum": settings.package.checksum,
        "include_asset_keys": settings.package.include_asset_keys,
        "exclude_asset_keys": settings.package.exclude_asset_keys,
        "lock_concurrency": settings.package.lock_concurrency, "relocation_concurrency": relocation.concurrency,
        "memory_limit_mib": relocation.memory_limit_mib, "chunk_size_mib": relocation.chunk_size_mib,
        "put_concurrency": relocation.put_concurrency, "verify": relocation.verify,
        "deep_validation": settings.validation.deep, "workdir": settings.package.workdir,
    }
    if relocation.key_template:
        package_kwargs["key_template"] = relocation.key_template
    partitions = settings.partitions
    static_areas = partitions.areas if isinstance(partitions.areas, dict) else {}
    return {
        "partitions": PartitionsResource(
            dimension=partitions.dimension or "none", areas={name: json.dumps(area) for name, area in static_areas.items()},
            source=_absolute(partitions.source) if partitions.source else None),
        "stac_api": StacApiResource(url=settings.stac_api.url, headers=_env_refs(settings.stac_api.headers),
                                    max_retries=settings.stac_api.max_retries,
                                    default_search=_search_spec(settings.search)),
        "package": PackageResource(**package_kwargs),
        "storage": StorageResource(profiles=[StorageProfileConfig.from_settings(_env_refs(p))
                                             for p in settings.storage.profiles],
                                   keystore=_keystore(settings.keystore)),
        "rewrite": RewriteResource(rules=[RewriteRuleConfig(**r) for r in settings.rewrite.rules],
                                   buckets=[BucketOverrideConfig(**b) for b in settings.rewrite.buckets]),
    }
