"""Credentials that refresh themselves: obstore credential providers built from a storage profile.

- ``credential_process``: a command printing AWS ``credential_process`` JSON (``AccessKeyId``,
  ``SecretAccessKey``, optional ``SessionToken`` and ``Expiration``), the convention of the AWS CLI and
  of vault/sso helpers. obstore calls it again shortly before ``Expiration``, so long relocations keep
  working across token lifetimes.
- ``credential_provider: planetary_computer``: SAS tokens from the Planetary Computer for its Azure
  containers (obstore's provider).
- ``credential_provider: earthdata``: temporary S3 credentials from a NASA DAAC endpoint
  (``credentials_url`` option, Earthdata login from ``EARTHDATA_USERNAME``/``EARTHDATA_PASSWORD`` or
  ``EARTHDATA_TOKEN``; obstore's provider).

What a command prints is a secret: it never reaches a log or an error message.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from datetime import datetime
from typing import Any

from packager.errors import AccessDenied, ConfigError

COMMAND_TIMEOUT_SECONDS = 60


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


def provider_for(profile, kind: str, container_url: str | None = None):
    """The obstore credential provider a profile asks for, or ``None`` (static credentials)."""
    if profile is None:
        return None
    if profile.credential_process:
        if kind != "s3":
            raise ConfigError(f"storage profile {profile.name!r}: credential_process serves s3:// only")
        return CommandCredentialProvider(profile.credential_process, profile=profile.name)
    if profile.credential_provider == "planetary_computer":
        from obstore.auth.planetary_computer import PlanetaryComputerCredentialProvider

        return PlanetaryComputerCredentialProvider(container_url)
    if profile.credential_provider == "earthdata":
        from obstore.auth.earthdata import NasaEarthdataCredentialProvider

        url = profile.options.get("credentials_url")
        if not url:
            raise ConfigError(f"storage profile {profile.name!r}: earthdata needs options.credentials_url "
                              "(the DAAC's s3credentials endpoint)")
        return NasaEarthdataCredentialProvider(url)
    return None
