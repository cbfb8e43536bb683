"""`make demo` runs the whole chain offline: the runner, as the Makefile calls it, on a fresh output folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from devservers.process import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_whole_chain_offline(tmp_path):
    out = tmp_path / "demo-output"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STAC_PACKAGER_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "demo", "run", "--output", str(out), "--port", str(free_port())],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "validation_clean: passed" in done.stdout
    assert "857 objects locked" in done.stdout and "857 ok" in done.stdout

    package = out / "package"
    lock = pq.read_table(package / "assets.lock.parquet").to_pylist()
    assert len(lock) == 857
    # The lock reads each published https href through a rewrite rule into the local stand-in folder.
    row = next(r for r in lock if r["href"].startswith("https://sentinel2l2a01.blob.core.windows.net/"))
    assert row["store_type"] == "file" and row["key"].startswith(str(out / "source"))
    assert Path(row["key"]).stat().st_size == row["size_bytes"]
    report = pq.read_table(package / "validation" / "report.parquet").column("status").to_pylist()
    assert report == ["ok"] * 857
    request = json.loads((package / "search" / "request.json").read_text())
    assert request["returned"] == 45 and request["collections"] == ["sentinel-2-l2a", "landsat-c2-l2",
                                                                      "sentinel-1-grd", "naip"]
    assert (out / "dagster_home" / "dagster.yaml").exists() and (out / "settings.yaml").exists()

    # Run again: relocation resumes, nothing is copied twice.
    again = subprocess.run([sys.executable, "-m", "demo", "run", "--output", str(out), "--port", str(free_port())],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 copied, 857 already there, 0 failed" in again.stdout
