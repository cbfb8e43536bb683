"""One store client per (kind, bucket or container, endpoint, profile), built on first use.

stacpkg builds a new client per row per operation; reusing one client is ~10x faster on HEADs
(connection reuse, no TLS or signing setup per object). The registry also turns hrefs into locations
with the endpoint the profile names, so a lock records where an S3-compatible object really lives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from obstore.store import AzureStore, GCSStore, HTTPStore, LocalStore, S3Store

from packager.credentials import provider_for
from packager.errors import ConfigError
from packager.locations import Location, parse_href
from packager.profiles import StorageProfile, pick_profile
from packager.rewrite import RewriteRules
from packager.stores.base import Store
from packager.stores.guarded import GuardedStore
from packager.stores.obstore_backend import ObstoreStore

if TYPE_CHECKING:  # the keystore (and cryptography) is imported only when a profile names a key
    from packager.keystore import Keystore

#: builds a Store for kinds obstore does not serve (swift, webdav): (location, profile) -> Store
BackendFactory = Callable[[Location, StorageProfile | None], Store]


class StoreRegistry:
    """Resolves hrefs to locations and locations to cached :class:`Store` clients."""

    def __init__(self, profiles: Sequence[StorageProfile] = (), rewrite: RewriteRules | None = None,
                 extra_backends: dict[str, BackendFactory] | None = None, *, keystore: Keystore | None = None) -> None:
        names = [p.name for p in profiles]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"storage profile names must be unique; repeated: {', '.join(duplicates)}")
        self.keystore = keystore
        self.profiles = [_with_key_fields(p, keystore) for p in profiles]
        self.rewrite = rewrite or RewriteRules()
        self._extra = dict(extra_backends or {})
        self._cache: dict[tuple, Store] = {}
        self._lock = threading.Lock()

    # -- hrefs and locations -------------------------------------------------------------------
    def resolve(self, href: str, *, collection: str | None = None, base: str | None = None) -> Location:
        """The location to read ``href`` from: rewrite rules applied, endpoint filled in."""
        if base and href.strip() and not urlsplit(href.strip()).scheme and not href.strip().startswith("/"):
            href = urljoin(base, href.strip())  # rules match the resolved href, not './B01.tif'
        rewritten = self.rewrite.rewrite(href, collection)
        return self.with_endpoint(parse_href(rewritten, base=base))

    def with_endpoint(self, location: Location) -> Location:
        if location.kind != "s3" or location.endpoint:
            return location
        profile = pick_profile(self.profiles, location.href())
        override = self.rewrite.bucket(location.container or "")
        endpoint = (profile.endpoint if profile else None) or (override.endpoint if override else None)
        return Location(location.kind, location.container, location.key, endpoint) if endpoint else location

    def profile_for(self, location: Location) -> StorageProfile | None:
        if not self.profiles:  # called per row: skip building the href when there is nothing to match
            return None
        return pick_profile(self.profiles, location.href())

    # -- stores --------------------------------------------------------------------------------
    def store_for(self, location: Location) -> Store:
        profile = self.profile_for(location)
        cache_key = (*location.store_identity(), profile.name if profile else None)
        with self._lock:
            store = self._cache.get(cache_key)
            if store is None:
                if profile is not None and profile.keystore_key:
                    creds = self._key_credentials(profile)  # decrypted now, held only by the client
                    store = GuardedStore(self._build(location, profile.model_copy(update=creds.profile_update())),
                                         key_name=creds.name, capabilities=creds.capabilities)
                else:
                    store = self._build(location, profile)
                self._cache[cache_key] = store
            return store

    # -- keystore capabilities -----------------------------------------------------------------------
    def _key_credentials(self, profile: StorageProfile):
        if self.keystore is None:
            raise ConfigError(f"storage profile {profile.name!r} takes its credentials from keystore key "
                              f"{profile.keystore_key!r}, but no keystore is configured (settings: keystore.url)")
        return self.keystore.credentials(profile.keystore_key)

    def check_capability(self, location: Location, capability: str, what: str = "") -> None:
        """Raise :class:`KeystoreError` naming the key if the profile serving ``location`` uses a keystore key
        without ``capability``. Profiles without a keystore key are not restricted here."""
        profile = self.profile_for(location)
        if profile is None or not profile.keystore_key:
            return
        creds = self._key_credentials(profile)
        if capability not in creds.capabilities:
            from packager.keystore import KeystoreError

            raise KeystoreError(
                f"keystore key {creds.name!r} (storage profile {profile.name!r}) is "
                f"{'read-only' if capability == 'write' else 'write-only'}: it lacks the {capability!r} capability "
                f"(it has: {', '.join(creds.capabilities)}), so it cannot {capability} {location}"
                + (f"; {what}" if what else "")
                + ". Use a key with that capability for this profile.")

    def check_writable(self, location: Location, what: str = "") -> None:
        self.check_capability(location, "write", what)

    def check_readable(self, location: Location, what: str = "") -> None:
        self.check_capability(location, "read", what)

    def request_retries(self) -> int:
        """Requests the store clients built so far sent again on their own (Swift: swiftclient's retries
        and resumed downloads; WebDAV: replayed requests, resumed downloads, recovered MOVEs).

        obstore (S3, GCS, Azure, HTTP) retries inside its Rust client and does not tell how often, so its
        retries are not in this count; the engine's row retries (a whole row tried again) are not either:
        they are in each job's summary."""
        with self._lock:
            stores = list(self._cache.values())
        return sum(int(getattr(store, "request_retries", 0) or 0) for store in stores)

    def concurrency_for(self, location: Location, default: int) -> int:
        profile = self.profile_for(location)
        return profile.concurrency if profile and profile.concurrency else default

    def _build(self, location: Location, profile: StorageProfile | None) -> Store:
        kind = location.kind
        if kind in self._extra:
            return self._extra[kind](location, profile)
        if kind == "file":
            return ObstoreStore(LocalStore("/", mkdir=True), describe="local filesystem",
                                href_prefix="file://", local_root="/")
        client_options, retry = _client_options(profile, default_http=kind == "http")
        if kind in ("http", "https"):
            return ObstoreStore(HTTPStore.from_url(location.container, client_options=client_options,
                                                   retry_config=retry),
                                describe=str(location.container), href_prefix=str(location.container))
        if kind == "s3":
            return ObstoreStore(S3Store(location.container, config=self._s3_config(location, profile),
                                        client_options=client_options, retry_config=retry,
                                        credential_provider=provider_for(profile, "s3")),
                                describe=f"s3://{location.container}", href_prefix=f"s3://{location.container}")
        if kind == "gs":
            return ObstoreStore(GCSStore(location.container, config=_generic_config(profile),
                                         client_options=client_options, retry_config=retry),
                                describe=f"gs://{location.container}", href_prefix=f"gs://{location.container}")
        if kind == "az":
            config = _azure_config(location, profile)
            provider = provider_for(profile, "az", account_name=config.get("account_name"),
                                    container_name=location.container)
            return ObstoreStore(AzureStore(location.container, config=config, client_options=client_options,
                                           retry_config=retry, credential_provider=provider),
                                describe=f"az://{location.container}", href_prefix=f"az://{location.container}")
        if kind == "swift":
            from packager.stores.swift import build_swift_store

            return build_swift_store(location, profile)
        if kind in ("webdav+http", "webdav+https"):
            from packager.stores.webdav import build_webdav_store

            return build_webdav_store(location, profile)
        raise ConfigError(
            f"no storage backend for {location.href()!r} (kind {kind!r}); configure a storage profile whose "
            "url covers it, or a rewrite rule that maps it to s3://, gs://, az://, https:// or file://"
        )

    def _s3_config(self, location: Location, profile: StorageProfile | None) -> dict[str, Any]:
        override = self.rewrite.bucket(location.container or "")
        config: dict[str, Any] = _generic_config(profile)
        region = (profile.region if profile and profile.region else None) or (override.region if override else None)
        # obstore signs for us-east-1 when no region is given; MinIO-style endpoints need it explicit
        config["region"] = region or "us-east-1"
        endpoint = location.endpoint or (profile.endpoint if profile else None) or (override.endpoint if override else None)
        if endpoint:
            config["endpoint"] = endpoint
        if profile:
            if profile.request_payer:
                config["request_payer"] = True
            if profile.virtual_hosted_style_request:
                config["virtual_hosted_style_request"] = True
            if profile.server_side_encryption:
                config["server_side_encryption"] = profile.server_side_encryption
        if override and override.requester_pays:
            config["request_payer"] = True
        if override and override.skip_signature and not (profile and profile.access_key_id):
            config["skip_signature"] = True
        # UNSIGNED-PAYLOAD unless asked to sign: a signed body is a sha256 pass over every byte sent (~1 ms
        # per MiB, an eighth of a 1 MiB copy's CPU), and each copy is verified end to end regardless
        config["unsigned_payload"] = not (profile and profile.sign_payload)
        if not profile and not override:
            config.setdefault("skip_signature", True)  # unknown bucket: anonymous, like a public dataset
        return config


def _with_key_fields(profile: StorageProfile, keystore: Keystore | None) -> StorageProfile:
    """The profile with the clear fields of its keystore key filled in where the profile leaves them unset."""
    if not profile.keystore_key:
        return profile
    spec_secrets = [f for f in ("access_key_id", "secret_access_key", "session_token", "key", "token", "password")
                    if getattr(profile, f) is not None]
    if spec_secrets or profile.secret_options:
        raise ConfigError(f"storage profile {profile.name!r} names keystore key {profile.keystore_key!r} and also "
                          f"sets {', '.join(spec_secrets) or 'secret_options'}: take credentials from one place only")
    if keystore is None:
        return profile  # a registry without keystore (e.g. the one that reads the keystore file) fails on use
    from packager.keystore import KINDS

    entry = keystore.entry(profile.keystore_key)
    kind = parse_href(profile.url).kind if "://" in profile.url else None
    spec = KINDS.get(entry.kind)
    if spec is None or kind not in spec.schemes:
        raise ConfigError(f"storage profile {profile.name!r} ({profile.url}) cannot use keystore key "
                          f"{entry.name!r}: it is a {entry.kind} key")
    bucket = entry.fields.get("bucket")
    container = parse_href(profile.url).container
    if bucket and container and bucket != container:
        raise ConfigError(f"storage profile {profile.name!r} serves {profile.url}, but keystore key {entry.name!r} "
                          f"is for bucket {bucket!r}")
    update = {}
    for name, value in entry.fields.items():
        target = spec.profile_fields.get(name)
        if target and value not in (None, "") and getattr(profile, target) in (None, False):
            update[target] = value
    return profile.model_copy(update=update) if update else profile


def _azure_config(location: Location, profile: StorageProfile | None) -> dict[str, Any]:
    """obstore Azure config: the profile's options, its ``endpoint`` (the account's blob service URL), and the
    account name, from ``options.account_name`` or else from that URL.

    An endpoint is passed rather than obstore's ``use_emulator``: the emulator switch assumes Azurite on
    port 10000 and ignores credential providers (SAS tokens from the Planetary Computer API)."""
    config = _generic_config(profile)
    endpoint = (profile.endpoint if profile else None) or location.endpoint
    if profile and profile.endpoint:
        config.setdefault("endpoint", profile.endpoint)
    if endpoint and "account_name" not in config:
        config["account_name"] = _azure_account(endpoint)
    return config


def _azure_account(endpoint: str) -> str:
    """The storage account a blob service URL names: its first path segment when it has one (path style:
    Azurite, 'http://127.0.0.1:10000/devstoreaccount1'), else the first label of its host
    ('https://ACCOUNT.blob.core.windows.net')."""
    parts = urlsplit(endpoint)
    segment = parts.path.strip("/").split("/", 1)[0]
    return segment or (parts.hostname or "").split(".", 1)[0]


def _generic_config(profile: StorageProfile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    config: dict[str, Any] = dict(profile.options)
    config.update({k: v.get_secret_value() for k, v in profile.secret_options.items()})
    for field in ("access_key_id", "secret_access_key", "session_token"):
        value = getattr(profile, field)
        if value is not None:
            config[field] = value.get_secret_value()
    if profile.skip_signature:
        config["skip_signature"] = True
    return config


def _client_options(profile: StorageProfile | None, *, default_http: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    allow_http = profile.http_allowed() if profile else default_http
    options: dict[str, Any] = {"allow_http": allow_http or default_http,
                               "timeout": profile.timeout if profile else "120s",
                               "connect_timeout": profile.connect_timeout if profile else "10s"}
    from datetime import timedelta

    retry = {"max_retries": profile.max_retries if profile else 6,
             "retry_timeout": timedelta(seconds=profile.retry_timeout_seconds if profile else 120.0),
             "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=15),
                         "base": 2.0}}
    return options, retry
