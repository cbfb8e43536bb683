"""Wrong-region answers of S3, as AWS words them, become one error naming the region and the setting."""

from __future__ import annotations

import pytest

from packager.stores.obstore_backend import translate_error
from packager.stores.s3_region import WrongRegion, explain, needs_body_probe

#: AWS's answer to a GET through another region's endpoint (301, as documented for PermanentRedirect)
PERMANENT_REDIRECT = (
    "Generic S3 error: Error performing GET https://s3.us-east-1.amazonaws.com/sentinel-cogs/a.tif in 80ms - "
    "Server returned non-2xx status code: 301 Moved Permanently: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed "
    "using the specified endpoint. Please send all future requests to this endpoint.</Message>"
    "<Endpoint>sentinel-cogs.s3.us-west-2.amazonaws.com</Endpoint><Bucket>sentinel-cogs</Bucket></Error>")
#: object_store's words for a HEAD answered by 301 without a Location header
BARE_REDIRECT = ("Generic S3 error: Error performing HEAD https://s3.us-east-1.amazonaws.com/b/a.tif - "
                 "Received redirect without LOCATION, this normally indicates an incorrectly configured region")
NO_SUCH_KEY = ("Generic S3 error: Error performing GET http://127.0.0.1:9000/b/a.tif - Server returned non-2xx "
               "status code: 400 Bad Request: <Error><Code>InvalidArgument</Code><Message>Invalid Argument"
               "</Message></Error>")


def test_a_redirect_to_another_regions_endpoint_names_that_region():
    error = explain(PERMANENT_REDIRECT, "s3://sentinel-cogs/a.tif")
    assert isinstance(error, WrongRegion)
    assert "region 'us-west-2'" in str(error)
    assert "`rewrite: {buckets: [{bucket: sentinel-cogs, region: us-west-2}]}`" in str(error)


def test_a_redirect_without_the_region_still_says_the_region_is_wrong_and_how_to_find_it():
    error = explain(BARE_REDIRECT, "s3://b/a.tif")
    assert isinstance(error, WrongRegion)
    assert "aws s3api get-bucket-location --bucket b" in str(error)


def test_other_bad_requests_are_not_called_a_region_problem():
    assert explain(NO_SUCH_KEY, "s3://b/a.tif") is None
    assert explain(BARE_REDIRECT, "https://example.com/a.tif") is None  # not an S3 store: no bucket to name


def test_translate_error_keeps_the_body_that_names_the_region():
    error = translate_error(Exception(PERMANENT_REDIRECT), "s3://sentinel-cogs/a.tif")
    assert isinstance(error, WrongRegion) and not error.retryable


@pytest.mark.parametrize(("text", "probe"), [
    ("Generic S3 error: Error performing HEAD http://h/b/k in 4ms - Server returned non-2xx status code: "
     "400 Bad Request: \n\nDebug source: ...", True),
    ("Generic S3 error: Error performing GET http://h/b/k in 4ms - Server returned non-2xx status code: "
     "400 Bad Request: <?xml ...", False),
    ("Generic S3 error: Error performing HEAD http://h/b/k in 4ms - Server returned non-2xx status code: "
     "403 Forbidden: \n", False),
])
def test_only_a_bodiless_400_to_a_head_is_probed(text, probe):
    assert needs_body_probe(text, "s3://b/k") is probe


def test_other_service_errors_keep_their_code_and_message_but_nothing_else():
    body = ("Generic Azure error: Error performing PUT http://127.0.0.1:10000/devstoreaccount1/c/k in 3ms - "
            "Server returned non-2xx status code: 400 Bad Request: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
            "<Error><Code>InvalidMetadata</Code><Message>The metadata specified is invalid. It has characters "
            "that are not permitted.</Message><StringToSign>PUT\n\nsecret-ish</StringToSign></Error>")
    error = translate_error(Exception(body), "az://c/k")
    assert str(error).endswith("(InvalidMetadata: The metadata specified is invalid. It has characters that are "
                               "not permitted.)")
    assert "StringToSign" not in str(error) and "secret-ish" not in str(error)
    assert type(error).__name__ == "StoreError"  # "not permitted" in the prose does not make it access denied
