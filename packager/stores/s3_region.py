"""Recognise an S3 answer that means "this bucket lives in another region" and say how to fix it.

A client configured with the wrong region gets no "not found" and no "access denied" from S3, but one
of a handful of answers that name the problem in passing, and obstore passes them on as a generic
"400 Bad Request" or a redirect:

* ``AuthorizationHeaderMalformed`` (400): "the region 'us-east-1' is wrong; expecting 'eu-central-1'",
  with a ``<Region>`` element: the request was signed for another region than the bucket's. AWS and
  every SigV4-checking S3 server (Swift's s3api, Ceph RGW) answer this way.
* ``PermanentRedirect`` (301): the request reached another region's endpoint; the body's
  ``<Endpoint>`` names the right one (``bucket.s3.eu-west-1.amazonaws.com``).
* A redirect without a ``Location`` (how object_store reports a HEAD answered by ``301``): the region is
  wrong, but the answer does not say which one is right.

A HEAD answer has no body, so a bare "400 Bad Request" to a HEAD does not say which of these it was;
:func:`needs_body_probe` tells the store to ask again with a one-byte GET, whose answer has the body.

The messages name the href (never a signed URL or a key) and the setting to change.
"""

from __future__ import annotations

import re

from packager.errors import StoreError


class WrongRegion(StoreError):
    """The bucket is in another region than the one the store was configured with. Not retryable."""

    code = "wrong_region"


_REGION_IS_WRONG = re.compile(r"the region '(?P<used>[\w-]+)' is wrong; expecting '(?P<expected>[\w-]+)'")
_REGION_ELEMENT = re.compile(r"<Region>(?P<expected>[\w-]+)</Region>")
_REDIRECT_ENDPOINT = re.compile(
    r"<Code>PermanentRedirect</Code>.*?<Endpoint>[^<]*?s3[.-](?:dualstack\.)?(?P<expected>[a-z]{2}(?:-[a-z]+)+-\d+)"
    r"\.amazonaws\.com", re.DOTALL)
_REDIRECT_WITHOUT_REGION = ("redirect without location", "incorrectly configured region",
                            "<code>permanentredirect</code>")
_REGION_CODES = ("AuthorizationHeaderMalformed", "AuthorizationQueryParametersError",
                 "IllegalLocationConstraintException", "PermanentRedirect")


def bucket_of(href: str) -> str | None:
    """``s3://bucket/key`` -> ``bucket``; None for hrefs of other stores."""
    if not href.startswith("s3://"):
        return None
    return href[len("s3://"):].split("/", 1)[0] or None


def fix_for(bucket: str | None, expected: str | None) -> str:
    """What to change, spelled as the settings file spells it."""
    region = expected or "<the bucket's region>"
    where = f"the storage profile that serves s3://{bucket}" if bucket else "the storage profile"
    override = (f"; for a public bucket reached through a rewrite rule, "
                f"`rewrite: {{buckets: [{{bucket: {bucket}, region: {region}}}]}}`") if bucket else ""
    return f"set `region: {region}` in {where}{override}"


def explain(text: str, href: str) -> WrongRegion | None:
    """A :class:`WrongRegion` if the store's answer ``text`` (the whole error, body included) says the
    region is wrong, else None."""
    bucket = bucket_of(href)
    wrong = _REGION_IS_WRONG.search(text)
    if wrong:
        used, expected = wrong["used"], wrong["expected"]
        return WrongRegion(
            f"{href}: the bucket is in region '{expected}', but requests were signed for '{used}'; "
            f"{fix_for(bucket, expected)}", href=href)
    if any(code in text for code in _REGION_CODES):
        element = _REGION_ELEMENT.search(text) or _REDIRECT_ENDPOINT.search(text)
        if element:
            expected = element["expected"]
            return WrongRegion(
                f"{href}: the bucket is in region '{expected}', not the one this store is configured "
                f"with; {fix_for(bucket, expected)}", href=href)
    lowered = text.lower()
    if bucket and any(hint in lowered for hint in _REDIRECT_WITHOUT_REGION):
        return WrongRegion(
            f"{href}: S3 redirected the request to another region, so the bucket is not in the region "
            f"this store is configured with; {fix_for(bucket, None)} (the AWS console, or "
            f"`aws s3api get-bucket-location --bucket {bucket}`, shows it)", href=href)
    return None


def needs_body_probe(text: str, href: str) -> bool:
    """Whether a failed HEAD got a bare ``400 Bad Request`` from S3: its reason (a wrong region, most
    often) is only in the body that a GET of the same key would carry."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return bucket_of(href) is not None and "HEAD" in first and first.rstrip().endswith("400 Bad Request:")
