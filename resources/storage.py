"""Storage profiles and rewrite rules as Dagster resources, handing the engine a :class:`StoreRegistry`."""

from __future__ import annotations

from difflib import get_close_matches
from functools import cached_property
from typing import Any

import dagster as dg
from pydantic import AliasChoices, Field, PrivateAttr

from packager.errors import ConfigError
from packager.keystore import Keystore
from packager.profiles import StorageProfile
from packager.rewrite import BucketOverride, RewriteRule, RewriteRules
from packager.stores import StoreRegistry
from resources.keystore import KeystoreResource


class StorageProfileConfig(dg.Config):
    """A named store setting; give secrets as ``EnvVar("NAME")`` so they never sit in run config."""

    name: str
    url: str = Field(description="Prefix this profile serves: 's3://bucket', 'https://host', 'file:///data'.")
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    skip_signature: bool = False
    request_payer: bool = False
    virtual_hosted_style_request: bool = False
    sign_payload: bool = False
    server_side_encryption: str | None = None
    allow_http: bool | None = None
    timeout: str = "120s"
    connect_timeout: str = "10s"
    max_retries: int = 6
    retry_timeout_seconds: float = 120.0
    concurrency: int | None = None
    options: dict[str, str] = Field(default_factory=dict)
    secret_options: dict[str, str] = Field(default_factory=dict)
    # OpenStack Swift: auth_url + user + key (TempAuth / v1.0), storage_url + token, or Keystone v3
    auth_url: str | None = None
    user: str | None = None
    key: str | None = None
    storage_url: str | None = None
    token: str | None = None
    segment_size_mib: float | None = None
    auth_version: str | None = None
    project_name: str | None = None
    project_id: str | None = None
    user_domain_name: str | None = None
    user_domain_id: str | None = None
    project_domain_name: str | None = None
    project_domain_id: str | None = None
    region_name: str | None = None
    interface: str | None = None
    # WebDAV basic auth
    username: str | None = None
    password: str | None = None
    # credentials (and unset endpoint, region ...) from a named key of the keystore
    keystore_key: str | None = None
    # refreshing credentials: an AWS credential_process command, or 'planetary_computer' / 'earthdata'
    credential_process: str | None = None
    credential_provider: str | None = None
    credentials_url: str | None = None

    @classmethod
    def from_settings(cls, entry: dict[str, Any]) -> StorageProfileConfig:
        """A profile from the settings file, spelled as the engine's :class:`StorageProfile` (aliases such
        as ``endpoint_type`` included). An unknown key is refused, naming it and the nearest known ones:
        a Dagster ``Config`` built in Python would otherwise drop it without a word."""
        known = dict.fromkeys(StorageProfile.model_fields)
        aliases = {choice: name for name, field in StorageProfile.model_fields.items()
                   if isinstance(field.validation_alias, AliasChoices)
                   for choice in field.validation_alias.choices if isinstance(choice, str)}
        unknown = [key for key in entry if key not in known and key not in aliases]
        if unknown:
            hints = "; ".join(f"{key!r}" + (f" (did you mean {', '.join(map(repr, near))}?)"
                                            if (near := get_close_matches(key, known, n=2)) else "")
                              for key in unknown)
            raise ConfigError(f"storage profile {entry.get('name', '(unnamed)')!r}: unknown setting {hints}; "
                              f"the settings a profile takes: {', '.join(known)}")
        return cls(**{aliases.get(key, key): value for key, value in entry.items()})

    def to_engine(self) -> StorageProfile:
        return StorageProfile(**self.model_dump())


class RewriteRuleConfig(dg.Config):
    prefix: str
    replacement: str
    collections: list[str] | None = None


class BucketOverrideConfig(dg.Config):
    bucket: str
    region: str | None = None
    endpoint: str | None = None
    requester_pays: bool = False
    skip_signature: bool = False


class RewriteResource(dg.ConfigurableResource):
    """Ordered prefix rules (https CDN prefix -> s3://bucket/...) and per-bucket S3 overrides."""

    rules: list[RewriteRuleConfig] = Field(default_factory=list)
    buckets: list[BucketOverrideConfig] = Field(default_factory=list)

    def to_engine(self) -> RewriteRules:
        return RewriteRules(rules=[RewriteRule(**r.model_dump()) for r in self.rules],
                            buckets=[BucketOverride(**b.model_dump()) for b in self.buckets])


class StorageResource(dg.ConfigurableResource):
    """The storage profiles of this deployment; one registry (and one client per store) per step."""

    profiles: list[StorageProfileConfig] = Field(default_factory=list)
    keystore: KeystoreResource | None = Field(
        default=None, description="Keystore whose named keys profiles use (keystore_key); none by default.")
    _registry: StoreRegistry | None = PrivateAttr(default=None)

    def registry(self, rewrite: RewriteResource | None = None,
                 keystore: KeystoreResource | Keystore | None = None) -> StoreRegistry:
        """One registry per step. With a keystore (given here or configured), profiles naming a key get its
        credentials when their store is opened; the keystore file itself is read with the plain profiles."""
        if self._registry is None:
            profiles = [p.to_engine() for p in self.profiles]
            rules = rewrite.to_engine() if rewrite else RewriteRules()
            keystore = keystore if keystore is not None else self.keystore
            if isinstance(keystore, KeystoreResource):
                keystore = keystore.load(StoreRegistry(profiles, rules))
            self._registry = StoreRegistry(profiles, rules, keystore=keystore)
        return self._registry

    @cached_property
    def profile_names(self) -> list[str]:
        return [p.name for p in self.profiles]
