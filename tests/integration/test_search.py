"""search_to_ndjson against a real STAC API (``stac_api_url``: stac-fastapi-pgstac with 2,000 synthetic items).

Expected answers are computed from ``stac_synthetic_items`` (the same dicts the server holds), never
hard-coded. The request-validation tests at the top need no server.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from devservers.process import free_port
from packager.search import SearchError, SearchRequest, search_to_ndjson
from tests.retry_proxy import retry_proxy

SYNTH = "sentinel-2-l2a-synth"
SECRET = "s3cr3t-token-4f9a1c"


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _bbox_hits(items: list[dict[str, Any]], box: list[float]) -> set[str]:
    x0, y0, x1, y1 = box
    return {
        it["id"]
        for it in items
        if it["bbox"][0] <= x1 and it["bbox"][2] >= x0 and it["bbox"][1] <= y1 and it["bbox"][3] >= y0
    }


# --------------------------------------------------------------------------------------------------
# Request validation (no server)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"bbox": [0, 0, 1, 1, 2]}, "bbox needs 4 numbers"),
        ({"bbox": [0, 5, 1, 1]}, "swap them"),
        (
            {"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}},
            "either bbox or intersects",
        ),
        ({"intersects": {"type": "Feature", "geometry": {}}}, "pass the feature's 'geometry'"),
        ({"filter": "eo:cloud_cover <<< 10"}, "not valid CQL2"),
        ({"filter": "a = 1", "filter_lang": "cql2-json"}, "does not match"),
        ({"limit": 0}, "limit"),
        ({"datetime": "not-a-date"}, "not RFC 3339"),
        ({"collections": []}, "empty list"),
        ({"colections": ["x"]}, "colections"),
    ],
)
def test_request_validation_names_field_and_fix(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        SearchRequest(**kwargs)
    assert needle in str(exc.value)


def test_filter_lang_inferred_and_record_replays() -> None:
    text = SearchRequest(filter="eo:cloud_cover < 10")
    assert text.filter_lang == "cql2-text"
    js = SearchRequest(filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]})
    assert js.filter_lang == "cql2-json"
    record = js.as_record()
    assert "bbox" not in record and record["limit"] == 100
    assert SearchRequest(**json.loads(json.dumps(record))) == js


# --------------------------------------------------------------------------------------------------
# Against the API


@pytest.mark.integration
def test_paging_max_items_exact(stac_api_url: str, tmp_path: Path) -> None:
    out = tmp_path / "items.ndjson"
    s = search_to_ndjson(stac_api_url, SearchRequest(collections=[SYNTH], limit=10, max_items=37), out)
    items = _lines(out)
    assert s.returned == len(items) == 37
    assert len({it["id"] for it in items}) == 37
    assert s.pages == 4 and s.duplicates_dropped == 0 and s.retries == 0
    assert s.matched == 2000  # numberMatched from the first page (pgstac context=on)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.integration
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_bbox(stac_api_url: str, stac_synthetic_items: list[dict], tmp_path: Path, method: str) -> None:
    box = [0.0, 0.0, 30.0, 20.0]
    want = _bbox_hits(stac_synthetic_items, box)
    assert 0 < len(want) < 100
    s = search_to_ndjson(
        stac_api_url,
        SearchRequest(collections=[SYNTH], bbox=box, limit=10, method=method),
        tmp_path / "o.ndjson",
    )
    assert {it["id"] for it in _lines(tmp_path / "o.ndjson")} == want
    assert s.pages == -(-len(want) // 10)


@pytest.mark.integration
def test_intersects(stac_api_url: str, stac_synthetic_items: list[dict], tmp_path: Path) -> None:
    box = [-50.0, -10.0, -20.0, 15.0]
    x0, y0, x1, y1 = box
    poly = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}
    search_to_ndjson(stac_api_url, SearchRequest(collections=[SYNTH], intersects=poly), tmp_path / "o.ndjson")
    assert {it["id"] for it in _lines(tmp_path / "o.ndjson")} == _bbox_hits(stac_synthetic_items, box)


@pytest.mark.integration
def test_datetime_range(stac_api_url: str, stac_synthetic_items: list[dict], tmp_path: Path) -> None:
    lo, hi = datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 3, tzinfo=UTC)

    def when(it: dict) -> datetime:
        return datetime.fromisoformat(it["properties"]["datetime"].replace("Z", "+00:00"))

    want = {it["id"] for it in stac_synthetic_items if lo <= when(it) <= hi}
    req = SearchRequest(collections=[SYNTH], datetime="2020-01-01T00:00:00Z/2020-01-03T00:00:00Z")
    search_to_ndjson(stac_api_url, req, tmp_path / "o.ndjson")
    assert {it["id"] for it in _lines(tmp_path / "o.ndjson")} == want


@pytest.mark.integration
def test_ids_items_as_served(stac_api_url: str, stac_synthetic_items: list[dict], tmp_path: Path) -> None:
    want = [stac_synthetic_items[k] for k in (3, 500, 1999)]
    req = SearchRequest(collections=[SYNTH], ids=[it["id"] for it in want])
    s = search_to_ndjson(stac_api_url, req, tmp_path / "o.ndjson")
    got = {it["id"]: it for it in _lines(tmp_path / "o.ndjson")}
    assert s.returned == 3 and set(got) == {it["id"] for it in want}
    for it in want:  # no pystac migration: properties and assets exactly as loaded
        assert got[it["id"]]["properties"] == it["properties"]
        assert got[it["id"]]["assets"] == it["assets"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("flt", "method"),
    [
        ("eo:cloud_cover < 10", "POST"),
        ("eo:cloud_cover < 10", "GET"),
        ({"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}, "POST"),
        ({"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}, "GET"),
    ],
)
def test_cql2_filter(
    stac_api_url: str, stac_synthetic_items: list[dict], tmp_path: Path, flt: Any, method: str
) -> None:
    want = {it["id"] for it in stac_synthetic_items if it["properties"]["eo:cloud_cover"] < 10}
    req = SearchRequest(collections=[SYNTH], filter=flt, method=method)
    s = search_to_ndjson(stac_api_url, req, tmp_path / "o.ndjson")
    assert {it["id"] for it in _lines(tmp_path / "o.ndjson")} == want
    assert s.matched == len(want)
    sent = s.request["sent_parameters"]
    assert sent["filter-lang"] == ("cql2-json" if method == "POST" else "cql2-text")


@pytest.mark.integration
def test_sortby(stac_api_url: str, stac_synthetic_items: list[dict], tmp_path: Path) -> None:
    req = SearchRequest(collections=[SYNTH], sortby="-eo:cloud_cover", limit=10, max_items=25)
    search_to_ndjson(stac_api_url, req, tmp_path / "o.ndjson")
    got = [it["properties"]["eo:cloud_cover"] for it in _lines(tmp_path / "o.ndjson")]
    want = sorted((it["properties"]["eo:cloud_cover"] for it in stac_synthetic_items), reverse=True)[:25]
    assert got == want


@pytest.mark.integration
def test_record_equals_request(stac_api_url: str, tmp_path: Path) -> None:
    req = SearchRequest(
        collections=[SYNTH], bbox=[0, 0, 30, 20], datetime="2020-01-01T00:00:00Z/..", limit=7, max_items=9
    )
    s = search_to_ndjson(stac_api_url, req, tmp_path / "o.ndjson")
    record = {k: v for k, v in s.request.items() if k not in ("api_url", "sent_parameters")}
    assert record == req.as_record()
    assert s.request["api_url"] == stac_api_url.rstrip("/") or s.request["api_url"] == stac_api_url
    assert SearchRequest(**record) == req
    json.dumps(s.request)  # serialisable


@pytest.mark.integration
def test_retries_503_and_429_then_success(stac_api_url: str, tmp_path: Path) -> None:
    with retry_proxy(stac_api_url, failures=[503, 429, 503, 502], retry_after="1") as (url, state):
        s = search_to_ndjson(
            url,
            SearchRequest(collections=[SYNTH], limit=10, max_items=25),
            tmp_path / "o.ndjson",
            backoff_factor=0.01,
        )
    assert s.returned == 25 and s.pages == 3
    assert s.retries == 4 and state.injected == 4
    assert s.seconds >= 1.0  # Retry-After: 1 was honoured


@pytest.mark.integration
def test_retries_exhausted_is_search_error(stac_api_url: str, tmp_path: Path) -> None:
    out = tmp_path / "o.ndjson"
    with retry_proxy(stac_api_url, failures=[503] * 10) as (url, _), pytest.raises(SearchError) as exc:
        search_to_ndjson(url, SearchRequest(collections=[SYNTH]), out, max_retries=2, backoff_factor=0.01)
    assert url in str(exc.value) and "503" in str(exc.value)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.integration
def test_server_rejects_request_not_retried(stac_api_url: str, tmp_path: Path) -> None:
    """A 4xx (as for a filter the server refuses; pgstac itself answers bad CQL2 with 500) is not retried."""
    out = tmp_path / "o.ndjson"
    req = SearchRequest(collections=[SYNTH], filter="eo:cloud_cover < 10")
    proxy = retry_proxy(stac_api_url, failures=[], fail_path=("/search", 400))
    with proxy as (url, state), pytest.raises(SearchError) as exc:
        search_to_ndjson(url, req, out, backoff_factor=0.01)
    assert exc.value.status_code == 400 and "HTTP 400" in str(exc.value)
    assert url in str(exc.value) and "queryables" in str(exc.value)
    assert state.injected == 1  # no retry of a 4xx
    assert not out.exists()


def test_api_down_is_search_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "o.ndjson"
    with pytest.raises(SearchError) as exc:
        search_to_ndjson(url, SearchRequest(), out, max_retries=1, backoff_factor=0.01, timeout=5)
    assert url in str(exc.value) and "check the URL" in str(exc.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_failure_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "o.ndjson"
    out.write_text("previous\n")
    with pytest.raises(SearchError):
        search_to_ndjson(f"http://127.0.0.1:{free_port()}", SearchRequest(), out, max_retries=0)
    assert out.read_text() == "previous\n" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.integration
def test_secret_headers_sent_but_never_shown(
    stac_api_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET}
    caplog.set_level(logging.DEBUG)
    with retry_proxy(stac_api_url, failures=[503]) as (url, state):
        s = search_to_ndjson(
            url,
            SearchRequest(collections=[SYNTH], max_items=3),
            tmp_path / "o.ndjson",
            headers=headers,
            backoff_factor=0.01,
        )
    assert any(h.get("X-Api-Key") == SECRET for h in state.seen_headers)  # really sent
    assert SECRET not in repr(s) and SECRET not in json.dumps(s.request)
    assert SECRET not in caplog.text
    rejecting = retry_proxy(stac_api_url, failures=[], fail_path=("/search", 403))
    with rejecting as (url, _), pytest.raises(SearchError) as exc:
        search_to_ndjson(url, SearchRequest(), tmp_path / "x.ndjson", headers=headers)
    assert SECRET not in str(exc.value) and SECRET not in repr(exc.value)


def test_url_secrets_masked_in_errors(tmp_path: Path) -> None:
    """Credentials belong in headers; a token in the URL is still masked in the message and record."""
    down = f"http://user:{SECRET}@127.0.0.1:{free_port()}/?token={SECRET}"
    with pytest.raises(SearchError) as exc:
        search_to_ndjson(down, SearchRequest(), tmp_path / "x.ndjson", max_retries=0)
    assert SECRET not in str(exc.value) and "token=***" in str(exc.value)
