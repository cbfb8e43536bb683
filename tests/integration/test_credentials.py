"""Refreshing credentials against a real S3 server: a credential_process command, re-run when it expires."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from packager.errors import AccessDenied
from packager.profiles import StorageProfile
from packager.stores import StoreRegistry

pytestmark = pytest.mark.integration

HELPER = """
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
counter.write_text(str(int(counter.read_text() or 0) + 1) if counter.exists() else "1")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=float(sys.argv[4]))
print(json.dumps({"Version": 1, "AccessKeyId": sys.argv[2], "SecretAccessKey": sys.argv[3],
                  "Expiration": expires.isoformat()}))
"""


def _registry(bucket: str, s3, command: str) -> StoreRegistry:
    return StoreRegistry([StorageProfile(name="refreshing", url=f"s3://{bucket}", endpoint=s3.endpoint,
                                         region=s3.region, credential_process=command)])


def test_credential_process_is_run_again_when_its_credentials_expire(s3_endpoint, s3_bucket, s3_client, tmp_path):
    s3_client.put_object(Bucket=s3_bucket, Key="a.bin", Body=b"x" * 10)
    helper, counter = tmp_path / "creds.py", tmp_path / "calls"
    helper.write_text(HELPER)
    # the secret goes through a file argument here only because this is a test helper; real helpers fetch it
    command = (f"{sys.executable} {helper} {counter} {s3_endpoint.access_key_id} "
               f"{s3_endpoint.secret_access_key} 1")
    registry = _registry(s3_bucket, s3_endpoint, command)
    location = registry.resolve(f"s3://{s3_bucket}/a.bin")
    store = registry.store_for(location)

    async def head_twice():
        first = await store.head(location.key)
        time.sleep(1.5)  # past Expiration: obstore asks the provider again before the next request
        second = await store.head(location.key)
        return first, second

    first, second = asyncio.run(head_twice())
    assert first.size == second.size == 10
    assert int(counter.read_text()) >= 2


def test_a_failing_credential_process_names_the_profile_not_the_secret(s3_endpoint, s3_bucket, tmp_path):
    helper = tmp_path / "fail.py"
    helper.write_text("import sys; print('leaked-secret-value', file=sys.stderr); sys.exit(3)")
    registry = _registry(s3_bucket, s3_endpoint, f"{sys.executable} {helper}")
    location = registry.resolve(f"s3://{s3_bucket}/a.bin")
    with pytest.raises(AccessDenied) as raised:
        asyncio.run(registry.store_for(location).head(location.key))
    text = str(raised.value)
    assert "storage profile 'refreshing': credential_process" in text and "exited with 3" in text
    assert "leaked-secret-value" not in text


def test_credential_process_output_must_be_credential_json(s3_endpoint, s3_bucket, tmp_path):
    helper = tmp_path / "bad.py"
    helper.write_text("print(" + repr(json.dumps({"AccessKeyId": "only-half"})) + ")")
    registry = _registry(s3_bucket, s3_endpoint, f"{sys.executable} {helper}")
    location = registry.resolve(f"s3://{s3_bucket}/a.bin")
    with pytest.raises(AccessDenied, match="did not print AWS credential_process JSON") as raised:
        asyncio.run(registry.store_for(location).head(location.key))
    assert "only-half" not in str(raised.value)
