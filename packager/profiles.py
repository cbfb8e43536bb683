"""Storage profiles: named settings for the stores a package reads from and writes to.

A profile serves every location under its ``url`` prefix (``s3://bucket``, ``s3://bucket/prefix``,
``https://host``, ``gs://bucket``...). S3 settings are spelled as obstore spells them, so anything in
obstore's documentation applies. Secrets are :class:`pydantic.SecretStr`: they print as ``**********``
in reprs, logs and validation errors, and are revealed only when a store client is built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from packager.errors import ConfigError


class StorageProfile(BaseModel):
    """Settings for the store(s) under ``url``. The longest matching ``url`` wins."""

    model_config = {"extra": "forbid"}

    name: str = Field(description="A name to refer to this profile by (logs, keystore, UI).")
    url: str = Field(description="Prefix this profile serves: 's3://bucket', 'https://host', 'file:///data'.")
    endpoint: str | None = Field(default=None, description="S3-compatible endpoint, e.g. 'http://127.0.0.1:9000'.")
    region: str | None = Field(default=None, description="Region; always set it for MinIO-style endpoints.")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    skip_signature: bool = Field(default=False, description="Anonymous requests (public buckets).")
    request_payer: bool = Field(default=False, description="Requester-pays buckets (S3).")
    virtual_hosted_style_request: bool = False
    server_side_encryption: str | None = Field(default=None, description="'AES256', 'aws:kms'...")
    allow_http: bool | None = Field(default=None, description="Allow plain http; default: the endpoint's scheme.")
    timeout: str = Field(default="120s", description="Per-request timeout (obstore duration string).")
    connect_timeout: str = "10s"
    max_retries: int = Field(default=6, ge=0, description="Retries of one request on 5xx/429/connection errors.")
    retry_timeout_seconds: float = Field(default=120.0, gt=0)
    concurrency: int | None = Field(default=None, ge=1, description="Most requests in flight to this store.")
    options: dict[str, str] = Field(
        default_factory=dict, description="Other obstore config keys, passed through verbatim."
    )
    secret_options: dict[str, SecretStr] = Field(
        default_factory=dict, description="Other obstore config keys that are secrets (account_key...)."
    )
    # -- OpenStack Swift (swift://container): auth_url + user + key, or storage_url + token ----------
    auth_url: str | None = Field(default=None, description="Swift TempAuth / v1.0 auth URL (ST_AUTH).")
    user: str | None = Field(default=None, description="Swift user, 'account:user' for TempAuth (ST_USER).")
    key: SecretStr | None = Field(default=None, description="Swift key / password (ST_KEY).")
    storage_url: str | None = Field(default=None, description="Pre-authenticated Swift storage URL (OS_STORAGE_URL).")
    token: SecretStr | None = Field(default=None, description="Pre-authenticated Swift token (OS_AUTH_TOKEN).")
    segment_size_mib: float | None = Field(
        default=None, gt=0, description="Swift: streams longer than this become static large objects (default 512)."
    )
    # -- WebDAV (webdav://host, webdavs://host): HTTP basic auth ------------------------------------
    username: str | None = Field(default=None, description="WebDAV basic-auth user name.")
    password: SecretStr | None = Field(default=None, description="WebDAV basic-auth password.")
    # -- refreshing credentials (packager.credentials) --------------------------------------------------
    credential_process: str | None = Field(
        default=None, description="S3: a command printing AWS credential_process JSON; re-run before Expiration.")
    credential_provider: Literal["planetary_computer", "earthdata"] | None = Field(
        default=None, description="obstore's Planetary Computer (az) or NASA Earthdata (s3) credential provider.")
    # -- keystore: the credentials (and clear fields left unset here) come from a named keystore key --------
    keystore_key: str | None = Field(
        default=None, description="Name of a keystore key holding this profile's credentials (see packager.keystore).")

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ConfigError(
                f"storage profile url {value!r} has no scheme: write e.g. 's3://bucket' or 'file:///path'"
            )
        return value.rstrip("/")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(
                f"endpoint {value!r} is not a URL: write 'http://{value}' or 'https://{value}' "
                "(a bare host:port would be read as a scheme)"
            )
        return value.rstrip("/") if value else value

    def serves(self, href: str) -> bool:
        return href == self.url or href.startswith(self.url + "/")

    def http_allowed(self) -> bool:
        if self.allow_http is not None:
            return self.allow_http
        return bool(self.endpoint and self.endpoint.startswith("http://")) or self.url.startswith("http://")


def pick_profile(profiles: list[StorageProfile], href: str) -> StorageProfile | None:
    """The profile with the longest ``url`` that serves ``href``."""
    matches = [p for p in profiles if p.serves(href)]
    return max(matches, key=lambda p: len(p.url), default=None)
