"""Credentials that refresh themselves: obstore credential providers built from a storage profile.

- ``credential_process``: a command printing AWS ``credential_process`` JSON (``AccessKeyId``,
  ``SecretAccessKey``, optional ``SessionToken`` and ``Expiration``), the convention of the AWS CLI and
  of vault/sso helpers. obstore calls it again shortly before ``Expiration``, so long relocations keep
  working across token lifetimes.
- ``credential_provider: planetary_computer``: container SAS tokens for ``az://`` from the Planetary
  Computer's token API, ``GET {credentials_url}/{account}/{container}`` (obstore's provider; the profile's
  ``credentials_url`` is obstore's ``sas_url``, default ``PC_SDK_SAS_URL`` or Microsoft's API).
- ``credential_provider: earthdata``: temporary S3 credentials from a NASA DAAC ``s3credentials`` endpoint
  (the profile's ``credentials_url``), Earthdata login from ``EARTHDATA_TOKEN``, else
  ``EARTHDATA_USERNAME``/``EARTHDATA_PASSWORD`` or ``~/.netrc`` (obstore's provider).

obstore asks a provider again shortly before the expiry it returned (within 5 minutes of it), so a
relocation outlives any one token. A provider's failure reaches the caller as :class:`AccessDenied`
naming the storage profile and the endpoint, never the token or the response body.

What a command prints is a secret: it never reaches a log or an error message.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from packager.errors import AccessDenied, ConfigError
from packager.locations import safe_href

COMMAND_TIMEOUT_SECONDS = 60
#: (connect, read) seconds for a credential endpoint: obstore waits for a provider without a limit
ENDPOINT_TIMEOUT_SECONDS = (10.0, 60.0)
#: requests of a credential endpoint sent again after 429/5xx or a failed connection (0.2 s, 0.4 s apart)
ENDPOINT_RETRIES = 2


class CommandCredentialProvider:
    """An obstore S3 credential provider that runs ``command`` (AWS ``credential_process`` output)."""

    def __init__(self, command: str, *, profile: str) -> None:
        self._argv = shlex.split(command)
        if not self._argv:
            raise ConfigError(f"storage profile {profile!r}: credential_process is empty")
        self._profile = profile

    def __call__(self) -> dict[str, Any]:
        name = self._argv[0]
        try:
            done = subprocess.run(self._argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AccessDenied(f"storage profile {self._profile!r}: credential_process {name!r} could not run "
                               f"({type(exc).__name__})") from None
        if done.returncode != 0:  # its stderr may hold secrets: report the exit code only
            raise AccessDenied(f"storage profile {self._profile!r}: credential_process {name!r} exited with "
                               f"{done.returncode}")
        try:
            data = json.loads(done.stdout)
            credential = {"access_key_id": data["AccessKeyId"], "secret_access_key": data["SecretAccessKey"],
                          "token": data.get("SessionToken"), "expires_at": None}
            if data.get("Expiration"):
                credential["expires_at"] = datetime.fromisoformat(data["Expiration"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            raise AccessDenied(f"storage profile {self._profile!r}: credential_process {name!r} did not print "
                               "AWS credential_process JSON (AccessKeyId, SecretAccessKey, Expiration)") from None
        return credential


class EndpointCredentialProvider:
    """One of obstore's HTTP credential providers, whose failures name the profile and never a secret.

    obstore turns whatever a provider raises into an ``UnauthenticatedError`` carrying its message and
    traceback. The message of a ``requests`` error names neither the profile nor what to fix, and a
    parsing error may quote the response (a token); this raises one :class:`AccessDenied` instead, short
    enough to survive the store error's first 300 characters: the profile, the endpoint's host, the HTTP
    status and the settings to check.
    """

    def __init__(self, inner: Callable[[], dict[str, Any]], *, profile: str, what: str, url: str,
                 hint: str) -> None:
        self._inner = inner
        #: obstore merges a provider's ``config`` under the store's (the store's values win)
        self.config = dict(getattr(inner, "config", None) or {})
        host = urlsplit(safe_href(url)).netloc or safe_href(url)  # never a user:password@ in it
        self._where = f"storage profile {profile!r}: the {what} at {host}"
        self._hint = hint

    def __call__(self) -> dict[str, Any]:
        import requests

        try:
            return self._inner()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "an error"
            raise AccessDenied(f"{self._where} answered HTTP {status}; {self._hint}") from None
        except (KeyError, TypeError, ValueError):  # also requests' JSONDecodeError: never quote the body
            raise AccessDenied(f"{self._where} did not answer with the JSON credentials expected") from None
        except requests.RequestException as exc:
            raise AccessDenied(f"{self._where} could not be reached ({type(exc).__name__})") from None


def endpoint_session() -> Any:
    """A ``requests`` session for a credential endpoint: timeouts and a few quick retries.

    obstore's default session has no timeout and retries 5xx ten times with a backoff of up to two
    minutes: a token service that is down would hold every request of the store for a quarter of an hour.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
            kwargs["timeout"] = kwargs.get("timeout") or ENDPOINT_TIMEOUT_SECONDS
            return super().send(request, **kwargs)

    retry = Retry(total=ENDPOINT_RETRIES, backoff_factor=0.2, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET",), raise_on_status=False)  # the last answer's status, not RetryError
    session = requests.Session()
    for scheme in ("http://", "https://"):
        session.mount(scheme, TimeoutAdapter(max_retries=retry))
    return session


def _planetary_computer(profile, kind: str, account_name: str | None,
                        container_name: str | None) -> EndpointCredentialProvider:
    from obstore.auth.planetary_computer import PlanetaryComputerCredentialProvider

    if kind != "az":
        raise ConfigError(f"storage profile {profile.name!r}: credential_provider planetary_computer serves "
                          "az:// only")
    if not account_name or not container_name:
        raise ConfigError(f"storage profile {profile.name!r}: planetary_computer needs the storage account: set "
                          "endpoint ('https://ACCOUNT.blob.core.windows.net') or options.account_name")
    sas_url = profile.credentials_url or os.environ.get("PC_SDK_SAS_URL")
    inner = PlanetaryComputerCredentialProvider(account_name=account_name, container_name=container_name,
                                                sas_url=sas_url, session=endpoint_session())
    base = (sas_url or "https://planetarycomputer.microsoft.com/api/sas/v1/token").rstrip("/")
    return EndpointCredentialProvider(
        inner, profile=profile.name, what="Planetary Computer token API", url=f"{base}/{account_name}/{container_name}",
        hint="check credentials_url and PC_SDK_SUBSCRIPTION_KEY")


def _earthdata(profile, kind: str) -> EndpointCredentialProvider:
    from obstore.auth.earthdata import NasaEarthdataCredentialProvider

    if kind != "s3":
        raise ConfigError(f"storage profile {profile.name!r}: credential_provider earthdata serves s3:// only")
    url = profile.credentials_url
    if not url:
        raise ConfigError(f"storage profile {profile.name!r}: earthdata needs credentials_url "
                          "(the DAAC's s3credentials endpoint)")
    inner = NasaEarthdataCredentialProvider(url, session=endpoint_session())
    return EndpointCredentialProvider(
        inner, profile=profile.name, what="Earthdata s3credentials endpoint", url=url,
        hint="check EARTHDATA_TOKEN or EARTHDATA_USERNAME/PASSWORD")


def provider_for(profile, kind: str, *, account_name: str | None = None, container_name: str | None = None):
    """The obstore credential provider a profile asks for, or ``None`` (static credentials).

    ``account_name`` and ``container_name``: the Azure storage account and container of an ``az://``
    store, which the Planetary Computer token API is asked for.
    """
    if profile is None:
        return None
    if profile.credential_process:
        if kind != "s3":
            raise ConfigError(f"storage profile {profile.name!r}: credential_process serves s3:// only")
        return CommandCredentialProvider(profile.credential_process, profile=profile.name)
    if profile.credential_provider == "planetary_computer":
        return _planetary_computer(profile, kind, account_name, container_name)
    if profile.credential_provider == "earthdata":
        return _earthdata(profile, kind)
    return None


# -- OpenStack Swift: the openstack CLI's OS_* variables as fallbacks of a Keystone v3 profile -------------

#: StorageProfile field -> the environment variables the openstack / swift CLIs read for it (first set wins)
SWIFT_KEYSTONE_ENV: dict[str, tuple[str, ...]] = {
    "auth_url": ("OS_AUTH_URL",),
    "user": ("OS_USERNAME",),
    "key": ("OS_PASSWORD",),
    "project_name": ("OS_PROJECT_NAME",),
    "project_id": ("OS_PROJECT_ID",),
    "user_domain_name": ("OS_USER_DOMAIN_NAME",),
    "user_domain_id": ("OS_USER_DOMAIN_ID",),
    "project_domain_name": ("OS_PROJECT_DOMAIN_NAME",),
    "project_domain_id": ("OS_PROJECT_DOMAIN_ID",),
    "region_name": ("OS_REGION_NAME",),
    "interface": ("OS_INTERFACE", "OS_ENDPOINT_TYPE"),
}
SWIFT_VERSION_ENV = ("OS_IDENTITY_API_VERSION", "OS_AUTH_VERSION")
#: fields only Keystone has: setting any of them in a Swift profile means Keystone v3
KEYSTONE_ONLY_FIELDS = ("project_name", "project_id", "user_domain_name", "user_domain_id", "project_domain_name",
                        "project_domain_id", "region_name")
_SWIFT_CREDENTIAL_FIELDS = ("auth_url", "user", "username", "key", "password", "storage_url", "token")
#: an id and a name of the same thing: the environment's name is not added to a profile that has the id
_SAME_THING = {"project_id": "project_name", "user_domain_id": "user_domain_name",
               "project_domain_id": "project_domain_name"}


def swift_auth_version(profile) -> str | None:
    """'1' (TempAuth), '3' (Keystone v3) or None (not decided by the profile).

    ``auth_version`` when set; else '3' when a Keystone-only field (project, domain, region_name) is set or
    the auth URL ends in ``/v3``; else '1' when auth_url is set (TempAuth, what a Swift profile always was).
    """
    if profile is None:
        return None
    if profile.auth_version:
        return profile.auth_version
    if any(getattr(profile, f) for f in KEYSTONE_ONLY_FIELDS):
        return "3"
    if profile.auth_url:
        from urllib.parse import urlsplit

        return "3" if urlsplit(profile.auth_url).path.rstrip("/").endswith("/v3") else "1"
    return None


def swift_env_fallback(profile, environ: Mapping[str, str] | None = None):
    """The Swift ``profile`` with its unset Keystone v3 fields filled from ``OS_*`` variables, and the names
    of the variables used.

    Applies to a profile that is Keystone v3 (:func:`swift_auth_version`), or that sets no Swift credential
    at all while ``OS_AUTH_URL`` is set (then ``OS_IDENTITY_API_VERSION`` / ``OS_AUTH_VERSION`` decide the
    version, default 3), as the ``openstack`` and ``swift`` CLIs read them. Never for a profile whose
    credentials come from a keystore key (one source of credentials), a TempAuth profile, or a
    pre-authenticated one (storage_url + token) without Keystone fields. What the profile sets wins.
    """
    if profile is None or profile.keystore_key:
        return profile, []
    from pydantic import SecretStr

    from packager.profiles import normalize_auth_version

    env = os.environ if environ is None else environ
    version = swift_auth_version(profile)
    if version is None:
        if any(getattr(profile, f) for f in _SWIFT_CREDENTIAL_FIELDS) or not env.get("OS_AUTH_URL"):
            return profile, []
        named = next((n for n in SWIFT_VERSION_ENV if env.get(n)), None)
        try:
            version = normalize_auth_version(env[named]) if named else "3"
        except ConfigError as exc:
            raise ConfigError(f"storage profile {profile.name!r}: {named}: {exc}") from None
    if version != "3":
        return profile, []
    update: dict[str, Any] = {} if profile.auth_version == "3" else {"auth_version": "3"}
    used: list[str] = []
    for field, names in SWIFT_KEYSTONE_ENV.items():
        if getattr(profile, field) not in (None, ""):
            continue
        if (field == "user" and profile.username) or (field == "key" and profile.password):
            continue  # the WebDAV spellings of the same fields
        twin = _SAME_THING.get(field)
        if twin and (getattr(profile, twin) or twin in update):
            continue
        if field in _SAME_THING.values() and getattr(profile, next(k for k, v in _SAME_THING.items() if v == field)):
            continue
        name = next((n for n in names if env.get(n)), None)
        if name is None:
            continue
        value: Any = env[name]
        if field == "key":
            value = SecretStr(value)
        elif field == "interface":
            value = value.removesuffix("URL")  # publicURL, the keystone v2 spelling
            if value not in ("public", "internal", "admin"):
                raise ConfigError(f"storage profile {profile.name!r}: {name}={value!r}: use public, internal or "
                                  "admin")
        update[field] = value
        used.append(name)
    return (profile.model_copy(update=update) if update else profile), used
