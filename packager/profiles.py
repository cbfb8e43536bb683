"""Storage profiles: named settings for the stores a package reads from and writes to.

A profile serves every location under its ``url`` prefix (``s3://bucket``, ``s3://bucket/prefix``,
``https://host``, ``gs://bucket``...). S3 settings are spelled as obstore spells them, so anything in
obstore's documentation applies. Secrets are :class:`pydantic.SecretStr`: they print as ``**********``
in reprs, logs and validation errors, and are revealed only when a store client is built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator

from packager.errors import ConfigError


def normalize_auth_version(value: object) -> str | None:
    """A Swift ``auth_version`` as '1' or '3' (from 1, '1.0', 'v1', 3, '3', 'v3'...); None when unset."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower().removeprefix("v")
    if text in ("1", "1.0"):
        return "1"
    if text in ("3", "3.0"):
        return "3"
    raise ConfigError(f"auth_version {value!r}: use 1 (TempAuth / v1.0) or 3 (Keystone v3); Keystone's "
                      "v2.0 API is gone")


class StorageProfile(BaseModel):
    """Settings for the store(s) under ``url``. The longest matching ``url`` wins."""

    model_config = {"extra": "forbid"}

    name: str = Field(description="A name to refer to this profile by (logs, keystore, UI).")
    url: str = Field(description="Prefix this profile serves: 's3://bucket', 'https://host', 'file:///data'.")
    endpoint: str | None = Field(
        default=None, description="S3-compatible endpoint, e.g. 'http://127.0.0.1:9000'; for az:// the account's "
        "blob service URL, which names the account too: 'https://ACCOUNT.blob.core.windows.net', or path style "
        "'http://127.0.0.1:10000/devstoreaccount1' (Azurite).")
    region: str | None = Field(default=None, description="Region; always set it for MinIO-style endpoints.")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    skip_signature: bool = Field(default=False, description="Anonymous requests (public buckets).")
    request_payer: bool = Field(default=False, description="Requester-pays buckets (S3).")
    virtual_hosted_style_request: bool = False
    sign_payload: bool = Field(
        default=False, description="S3: sign upload bodies (x-amz-content-sha256 of the bytes) instead of sending "
        "UNSIGNED-PAYLOAD, as rclone and the AWS CLI over https do. Signing costs a sha256 pass over every byte "
        "sent; copies are verified end to end anyway (the store's MD5 ETag, or a read-back). Set it for a store "
        "that refuses unsigned payloads.")
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
    # -- Swift with Keystone v3 (auth_version 3): auth_url + user + key + project, as the openstack CLI ------
    auth_version: str | None = Field(
        default=None, description="Swift auth: '1' (TempAuth) or '3' (Keystone v3; implied by a project, domain "
        "or region_name field or an auth_url ending in /v3; OS_IDENTITY_API_VERSION).")
    project_name: str | None = Field(default=None, description="Keystone v3 project (OS_PROJECT_NAME).")
    project_id: str | None = Field(default=None, description="Keystone v3 project id (OS_PROJECT_ID).")
    user_domain_name: str | None = Field(default=None, description="Keystone v3 user domain (OS_USER_DOMAIN_NAME).")
    user_domain_id: str | None = Field(default=None, description="Keystone v3 user domain id (OS_USER_DOMAIN_ID).")
    project_domain_name: str | None = Field(
        default=None, description="Keystone v3 project domain (OS_PROJECT_DOMAIN_NAME).")
    project_domain_id: str | None = Field(
        default=None, description="Keystone v3 project domain id (OS_PROJECT_DOMAIN_ID).")
    region_name: str | None = Field(default=None, description="Keystone catalog region of Swift (OS_REGION_NAME).")
    interface: Literal["public", "internal", "admin"] | None = Field(
        default=None, validation_alias=AliasChoices("interface", "endpoint_type"),
        description="Keystone catalog interface of Swift, default public (OS_INTERFACE; alias endpoint_type).")
    # -- WebDAV (webdav://host, webdavs://host): HTTP basic auth ------------------------------------
    username: str | None = Field(default=None, description="WebDAV basic-auth user name.")
    password: SecretStr | None = Field(default=None, description="WebDAV basic-auth password.")
    # -- refreshing credentials (packager.credentials) --------------------------------------------------
    credential_process: str | None = Field(
        default=None, description="S3: a command printing AWS credential_process JSON; re-run before Expiration.")
    credential_provider: Literal["planetary_computer", "earthdata"] | None = Field(
        default=None, description="obstore's Planetary Computer (az) or NASA Earthdata (s3) credential provider.")
    credentials_url: str | None = Field(
        default=None, description="Where credential_provider gets credentials. earthdata (required): the DAAC's "
        "s3credentials URL. planetary_computer: the base URL of the SAS token API, asked "
        "GET {url}/{account}/{container} (obstore's sas_url; default $PC_SDK_SAS_URL, else "
        "https://planetarycomputer.microsoft.com/api/sas/v1/token).")
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

    @field_validator("auth_version", mode="before")
    @classmethod
    def _auth_version(cls, value: object) -> str | None:
        return normalize_auth_version(value)

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
