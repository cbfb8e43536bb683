"""The demo's STAC API: ``rustac serve`` holding ``demo/data`` (pip only, offline, POST search only)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.standins import COLLECTIONS_DIR, ITEMS_FILE, iter_items
from devservers.process import DevServerError, free_port
from devservers.rustac import _ordered_inputs, find_rustac, rustac_api

pytestmark = pytest.mark.integration

try:
    find_rustac()
except DevServerError as exc:  # pragma: no cover - the demo extra is not installed
    pytest.skip(str(exc), allow_module_level=True)

ITEMS = list(iter_items(ITEMS_FILE))
BY_ID = {it["id"]: it for it in ITEMS}
# expected ids from the footprints (checked against shapely when this data set was chosen)
BBOX_CASES = {
    "T35MNM time series": ([27.3, -7.9, 27.7, -7.5], {i for i in BY_ID if "_T35MNM_" in i}),
    "NAIP Puerto Rico": ([-65.7, 18.2, -65.6, 18.3], {"pr_m_1806551_nw_20_030_20221212_20230329"}),
    "Landsat Tasmania": (
        [148.0, -42.0, 150.0, -40.0],
        {"LC09_L2SP_089088_20240417_02_T2", "LC09_L2SP_089089_20240417_02_T1"},
    ),
    "CDSE Austria": (
        [14.0, 47.0, 17.0, 49.0],
        {"S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914"},
    ),
}


@pytest.fixture(scope="module")
def rustac_url() -> Iterator[str]:
    with rustac_api([ITEMS_FILE, COLLECTIONS_DIR]) as url:
        yield url


def _client(url: str):
    from pystac_client import Client

    return Client.open(url)


def test_collection_documents_go_first() -> None:
    files = _ordered_inputs([ITEMS_FILE, COLLECTIONS_DIR])
    assert [f.name for f in files] == [
        "naip.json",
        "sentinel-1-grd.json",
        "sentinel-2-l2a.json",
        "items.ndjson",
    ]


def test_collections_served(rustac_url: str) -> None:
    ids = sorted(c.id for c in _client(rustac_url).get_collections())
    assert ids == ["landsat-c2-l2", "naip", "sentinel-1-grd", "sentinel-2-l2a"]  # landsat-c2-l2 created


@pytest.mark.parametrize("collection", sorted(Counter(it["collection"] for it in ITEMS)))
def test_post_search_by_collection(rustac_url: str, collection: str) -> None:
    expected = [it["id"] for it in ITEMS if it["collection"] == collection]
    search = _client(rustac_url).search(collections=[collection], limit=7)  # POST, paged
    got = [it["id"] for it in search.items_as_dicts()]
    assert sorted(got) == sorted(expected)
    assert len(got) == {"sentinel-2-l2a": 30, "landsat-c2-l2": 6, "naip": 6, "sentinel-1-grd": 3}[collection]


@pytest.mark.parametrize("case", sorted(BBOX_CASES))
def test_post_search_by_bbox(rustac_url: str, case: str) -> None:
    bbox, expected = BBOX_CASES[case]
    got = {it["id"] for it in _client(rustac_url).search(bbox=bbox, limit=5).items_as_dicts()}
    assert got == expected


def test_items_served_with_assets_as_published(rustac_url: str) -> None:
    search = _client(rustac_url).search(collections=["landsat-c2-l2", "sentinel-2-l2a"], limit=50)
    served = list(search.items_as_dicts())
    assert len(served) == 36
    for it in served:
        assert it["assets"] == BY_ID[it["id"]]["assets"]
        self_href = next(link["href"] for link in it["links"] if link["rel"] == "self")
        assert self_href.startswith(rustac_url), "a public self link survived"


def test_start_and_stop(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with rustac_api([COLLECTIONS_DIR / "naip.json", ITEMS_FILE], workdir=tmp_path) as url:
        started = time.monotonic() - t0
        with urllib.request.urlopen(f"{url}/", timeout=5) as r:
            landing = json.load(r)
        assert landing["type"] == "Catalog"
        t1 = time.monotonic()
    stopped = time.monotonic() - t1
    assert started < 15 and stopped < 11
    assert (tmp_path / "rustac.log").is_file()
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:  # nothing listens there any more
        assert s.connect_ex((host, int(port))) != 0


def test_fixed_port_taken_is_a_clear_error(rustac_url: str) -> None:
    port = int(rustac_url.rsplit(":", 1)[1])
    with pytest.raises(DevServerError, match="in use"), rustac_api([ITEMS_FILE], port=port):
        pass


def test_fixed_port(tmp_path: Path) -> None:
    port = free_port()
    with rustac_api([ITEMS_FILE], port=port) as url:
        assert url == f"http://127.0.0.1:{port}"
        assert len(list(_client(url).search(ids=["LC08_L2SP_202033_20220327_02_T1"]).items_as_dicts())) == 1


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DevServerError, match="does not exist"), rustac_api([tmp_path / "nope.ndjson"]):
        pass


def test_missing_rustac_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevServerError, match=r"pip install \"rustac==0\.9\.18\""):
        find_rustac()
