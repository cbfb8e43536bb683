"""pytest fixtures for the real servers: S3 (SeaweedFS, or an external S3 such as MinIO) and a STAC API.

Servers start once per pytest session, on first use, on 127.0.0.1 with free ports, and are stopped
by PID at the end of the session (see :mod:`devservers`). Their logs stay in pytest's temp dir
(``pytest --basetemp=DIR`` to keep them somewhere known).

* ``s3_endpoint`` -> :class:`devservers.S3Server`. Set ``TEST_S3_ENDPOINT_URL``,
  ``TEST_S3_ACCESS_KEY_ID``, ``TEST_S3_SECRET_ACCESS_KEY`` (and optionally ``TEST_S3_REGION``) to run
  against an existing server instead; tests then only touch buckets they created.
* ``s3_bucket`` -> name of a fresh, empty bucket, emptied and deleted after the test;
  ``s3_bucket_factory()`` makes more of them.
* ``stac_api_url`` -> ``http://127.0.0.1:<port>`` of stac-fastapi-pgstac holding ``data/stac`` plus
  ``stac_synthetic_items`` (2,000 clones in collection ``sentinel-2-l2a-synth``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devservers import S3Server, stacdata
from devservers.pgstac import pgstac_api
from devservers.seaweedfs import external_s3_from_env, seaweedfs

SYNTH_COUNT = 2000


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An external S3 server when ``TEST_S3_ENDPOINT_URL`` is set, else a local SeaweedFS for the session."""
    external = external_s3_from_env()
    if external is not None:
        yield external
        return
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: S3Server) -> Any:
    """A boto3 S3 client with the endpoint's credentials (for setup and inspection in tests)."""
    import boto3

    return boto3.client("s3", **s3_endpoint.boto3_kwargs())


def _delete_bucket(client: Any, bucket: str) -> None:
    """Abort uploads, delete every object (and version) and the bucket; a bucket already gone is fine."""
    from botocore.exceptions import ClientError

    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                    for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]  # fmt: skip
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise


@pytest.fixture
def s3_bucket_factory(s3_client: Any) -> Iterator[Callable[[], str]]:
    """``make() -> bucket name``: creates uniquely named buckets, all deleted with their content afterwards.

    Unique names (``stacpkg-test-<random>``) keep runs apart on a shared external server.
    """
    made: list[str] = []

    def make() -> str:
        name = f"stacpkg-test-{uuid.uuid4().hex[:16]}"
        s3_client.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        _delete_bucket(s3_client, name)


@pytest.fixture
def s3_bucket(s3_bucket_factory: Callable[[], str]) -> str:
    """Name of a fresh empty bucket on ``s3_endpoint``; deleted with its content after the test."""
    return s3_bucket_factory()


@pytest.fixture(scope="session")
def stac_synthetic_items() -> list[dict[str, Any]]:
    """The 2,000 synthetic items served by ``stac_api_url`` (see ``stacdata.synthetic_items`` for the rule).

    Tests compute expected search answers from these dicts.
    """
    template = stacdata.template_item()
    return list(stacdata.synthetic_items(template, SYNTH_COUNT, stacdata.SYNTH_COLLECTION))


@pytest.fixture(scope="session")
def stac_api_url(
    tmp_path_factory: pytest.TempPathFactory, stac_synthetic_items: list[dict[str, Any]]
) -> Iterator[str]:
    """Base URL of stac-fastapi-pgstac with ``data/stac/items.ndjson`` and the synthetic items loaded.

    Needs PostgreSQL 15 + PostGIS (``scripts/install-system-deps.sh``). Open it with
    ``pystac_client.Client.open(url)``.
    """
    work = tmp_path_factory.mktemp("pgstac")
    synth = work / "synthetic.ndjson"
    stacdata.write_ndjson(synth, stac_synthetic_items)
    with pgstac_api(work / "api", [stacdata.ITEMS_FILE, synth], stacdata.COLLECTIONS_DIR) as url:
        yield url
