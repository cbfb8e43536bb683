"""URL rewrite rules: read the bytes of a published href from where you can reach them fastest.

A catalogue publishes ``https://sentinel-cogs.s3.us-west-2.amazonaws.com/...``; a platform reads the
same object as ``s3://sentinel-cogs/...`` with its own credentials, region or requester-pays flag, or
from a local mirror. Rules are ordered prefix maps, optionally limited to some collections; the first
match wins. Signed hrefs are never rewritten: their signature is bound to the original URL.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from packager.locations import strip_signature


class RewriteRule(BaseModel):
    """Map hrefs that start with ``prefix`` to ``replacement`` + the rest of the href."""

    prefix: str = Field(description="Published href prefix, e.g. 'https://cdn.example.com/data/'.")
    replacement: str = Field(description="What replaces the prefix, e.g. 's3://bucket/data/'.")
    collections: list[str] | None = Field(
        default=None, description="Apply only to items of these collections; all when omitted."
    )

    def apply(self, href: str, collection: str | None) -> str | None:
        if self.collections is not None and collection not in self.collections:
            return None
        if not href.startswith(self.prefix):
            return None
        return self.replacement + href[len(self.prefix) :]


class BucketOverride(BaseModel):
    """Per-bucket S3 settings for buckets reached through rewrite rules (public data buckets)."""

    bucket: str
    region: str | None = None
    endpoint: str | None = None
    requester_pays: bool = False
    skip_signature: bool = Field(default=False, description="Anonymous access to a public bucket.")


class RewriteRules(BaseModel):
    """The ordered rules and the per-bucket overrides, as one value the engine can carry."""

    rules: list[RewriteRule] = Field(default_factory=list)
    buckets: list[BucketOverride] = Field(default_factory=list)

    def rewrite(self, href: str, collection: str | None = None) -> str:
        """The href to read from: the first matching rule applied, or ``href`` unchanged."""
        if strip_signature(href).was_signed:
            return href
        for rule in self.rules:
            rewritten = rule.apply(href, collection)
            if rewritten is not None:
                return rewritten
        return href

    def bucket(self, name: str) -> BucketOverride | None:
        return next((b for b in self.buckets if b.bucket == name), None)

    @classmethod
    def of(cls, rules: Sequence[RewriteRule | dict] = (), buckets: Sequence[BucketOverride | dict] = ()):
        return cls(rules=list(rules), buckets=list(buckets))
