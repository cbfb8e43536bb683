"""pytest fixtures for a real Azure Blob Storage server: Azurite on 127.0.0.1, one per session, stopped by PID.

* ``azurite_server`` -> :class:`devservers.azurite.AzuriteServer`: ``azurite-blob`` (npm ``azurite``,
  installed by ``scripts/azurite.sh``), account ``devstoreaccount1`` with the emulator's well-known key, blobs
  in pytest's temp dir. Without Azurite the Azure tests are skipped, except in CI (``CI`` set), where a
  missing Azurite fails them: CI runs ``make system-deps``, so it must be there.
* ``azure_container`` -> name of a fresh container, deleted with its blobs after the test;
  ``azure_container_factory()`` makes more of them.
* ``azure_profile(container, **fields)`` -> a :class:`StorageProfile` for ``az://container`` on Azurite,
  with the account key.

Containers are made and removed with azure-storage-blob (Microsoft's SDK), not with the code under test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devservers.azurite import AzuriteServer, azurite, azurite_executable
from devservers.process import DevServerError
from packager.profiles import StorageProfile


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Azurite's blob service for the session (skipped without it, failed in CI without it)."""
    try:
        executable = azurite_executable()
    except DevServerError as exc:
        if _in_ci():
            pytest.fail(f"CI must run the Azure tests (make system-deps installs Azurite): {exc}", pytrace=False)
        pytest.skip(str(exc))
    with azurite(tmp_path_factory.mktemp("azurite"), executable=executable) as server:
        yield server


@pytest.fixture(scope="session")
def azure_blob_service(azurite_server: AzuriteServer) -> Any:
    """azure-storage-blob's ``BlobServiceClient`` on Azurite, for setup and inspection in tests."""
    from azure.storage.blob import BlobServiceClient

    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request and response at INFO
    return BlobServiceClient.from_connection_string(azurite_server.connection_string)


@pytest.fixture
def azure_container_factory(azure_blob_service: Any) -> Iterator[Callable[[], str]]:
    """``make() -> container name``: fresh containers (3-63 lowercase characters), deleted with their blobs."""
    made: list[str] = []

    def make() -> str:
        name = f"stacpkg-{uuid.uuid4().hex[:16]}"
        azure_blob_service.create_container(name)
        made.append(name)
        return name

    yield make
    from azure.core.exceptions import ResourceNotFoundError

    for name in made:
        with contextlib.suppress(ResourceNotFoundError):  # a test may have deleted it itself
            azure_blob_service.delete_container(name)


@pytest.fixture
def azure_container(azure_container_factory: Callable[[], str]) -> str:
    """Name of a fresh, empty container on ``azurite_server``; deleted with its blobs after the test."""
    return azure_container_factory()


@pytest.fixture(scope="session")
def azure_profile(azurite_server: AzuriteServer) -> Callable[..., StorageProfile]:
    """``make(container, **fields)``: the storage profile a user writes for ``az://container`` on Azurite.

    ``endpoint`` is the account's blob service URL (path style, so it names the account too) and the account
    key is a secret option; extra fields (``credential_provider``, ``max_retries``...) override.
    """

    def make(container: str, **fields: Any) -> StorageProfile:
        settings: dict[str, Any] = {"name": f"azure-{container}", "url": f"az://{container}",
                                    "endpoint": azurite_server.blob_endpoint,
                                    "secret_options": {"account_key": azurite_server.account_key}}
        return StorageProfile(**{**settings, **fields})

    return make
