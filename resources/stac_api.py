"""The STAC API a package is searched from, and its default search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from packager.search import SearchRequest, SearchSummary, search_to_ndjson


class SearchSpec(dg.Config):
    """A STAC item search. Structured values (intersects, filter as JSON, query) are JSON text, since
    Dagster config has no free-form union type; ``filter`` starting with ``{`` is CQL2 JSON, else text."""

    collections: list[str] | None = None
    bbox: list[float] | None = None
    intersects: str | None = Field(default=None, description="GeoJSON geometry as JSON text.")
    datetime: str | None = Field(default=None, description="RFC 3339 instant or interval ('a/b', '../b').")
    ids: list[str] | None = None
    filter: str | None = Field(default=None, description="CQL2 text, or CQL2 JSON as JSON text.")
    query: str | None = Field(default=None, description="STAC query extension object as JSON text.")
    sortby: str | None = Field(default=None, description="e.g. '-properties.datetime' or '+id'.")
    limit: int | None = Field(default=None, description="Items per page.")
    max_items: int | None = Field(default=None, description="Stop after this many items.")

    def overrides(self) -> dict[str, Any]:
        """The fields that were set, decoded into what :class:`SearchRequest` takes."""
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        for name in ("intersects", "query"):
            if name in values:
                values[name] = _json_field(name, values[name])
        if str(values.get("filter", "")).lstrip().startswith("{"):
            values["filter"] = _json_field("filter", values["filter"])
        return values


def _json_field(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise dg.Failure(f"search config '{name}' is not valid JSON ({exc}); give it as JSON text") from None


class StacApiResource(dg.ConfigurableResource):
    """A STAC API: its URL, request headers (tokens as EnvVar), retry policy and default search."""

    url: str = Field(description="Landing page of the STAC API.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (secrets via EnvVar).")
    max_retries: int = Field(default=5, description="Retries on 429 and 5xx, with exponential backoff.")
    backoff_factor: float = 0.5
    timeout_seconds: float = 60.0
    default_search: SearchSpec = Field(default_factory=SearchSpec, description="Search used when a run sets none.")

    def request(self, overrides: SearchSpec | None = None, **fixed: Any) -> SearchRequest:
        """The default search, then the run's overrides, then ``fixed`` (e.g. a partition's window)."""
        values = {**self.default_search.overrides(), **(overrides.overrides() if overrides else {}), **fixed}
        return SearchRequest(**values)

    def search(self, request: SearchRequest, out_path: Path) -> SearchSummary:
        return search_to_ndjson(self.url, request, out_path, headers=self.headers, max_retries=self.max_retries,
                                backoff_factor=self.backoff_factor, timeout=self.timeout_seconds)
