"""The code location loads in the real Dagster webserver from workspace.yaml, and its GraphQL shows the chain."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from devservers.process import free_port, start, wait_http

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

ASSETS_QUERY = """
{ assetNodes { assetKey { path } dependencyKeys { path } groupName
    assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""
JOBS_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } jobs { name } } } } }
"""


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    settings = home / "settings.yaml"
    settings.write_text("stac_api: {url: 'http://127.0.0.1:9/'}\npackage: {url: '%s'}\n" % (home / "pkg"))
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "STAC_PACKAGER_CONFIG": str(settings),
           "PYTHONPATH": str(REPO)}
    exe = Path(sys.executable).parent / "dagster-webserver"
    proc = start([exe, "-w", REPO / "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                 log_path=home / "webserver.log", env=env, cwd=REPO)
    try:
        wait_http(f"http://127.0.0.1:{port}/server_info", timeout=120, proc=proc, log_path=home / "webserver.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except Exception:
            proc.kill()
            proc.wait(5)


def _graphql(url: str, query: str) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_lineage_graph_shows_the_chain(webserver):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in _graphql(webserver, ASSETS_QUERY)["assetNodes"]}
    deps = {key: sorted("/".join(d["path"]) for d in node["dependencyKeys"]) for key, node in nodes.items()}
    assert deps["search_results"] == []
    assert deps["items_parquet"] == ["search_results"]
    assert deps["assets_lock"] == ["items_parquet"]
    assert deps["relocated_assets"] == ["assets_lock"]
    assert deps["validation_report"] == ["relocated_assets"]
    checks = {key: [c["name"] for c in node["assetChecksOrError"]["checks"]] for key, node in nodes.items()}
    assert checks["validation_report"] == ["validation_clean"]
    assert checks["assets_lock"] == ["lock_complete"]
    assert {n["groupName"] for n in nodes.values()} == {"stac_package"}


def test_location_and_jobs_are_served(webserver):
    repos = _graphql(webserver, JOBS_QUERY)["repositoriesOrError"]["nodes"]
    assert [r["location"]["name"] for r in repos] == ["stac_packager"]
    assert {"package_stac", "revalidate"} <= {j["name"] for j in repos[0]["jobs"]}
