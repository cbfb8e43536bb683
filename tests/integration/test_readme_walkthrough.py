"""The README's shell walkthrough, run as written: the block is taken from README.md, not copied here.

It runs in bash from the repository root, as a reader would paste it, with ``TMPDIR`` pointing at the
test's folder. Two things of this machine are bridged, not edited in the text: ``sudo`` (CI runs as root,
where Debian has no sudo) is a shim that runs its arguments, and the registry port 5005 must be free.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REGISTRY_PORT = 5005


def walkthrough() -> str:
    """The ```sh block under '### Shell walkthrough' in README.md."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Shell walkthrough", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README.md: no ```sh block under '### Shell walkthrough'"
    return match.group(1)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_readme_shell_walkthrough_works_as_written(tmp_path):
    if not _port_free(REGISTRY_PORT):
        pytest.fail(f"127.0.0.1:{REGISTRY_PORT} is taken; the walkthrough's registry needs it")
    shims = tmp_path / "bin"
    shims.mkdir()
    if not any((Path(p) / "sudo").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
        sudo = shims / "sudo"
        sudo.write_text('#!/bin/sh\nexec "$@"\n')
        sudo.chmod(sudo.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("STAC_PACKAGER_CONFIG", "VIRTUAL_ENV")}
    env.update(TMPDIR=str(tmp_path), PATH=f"{shims}{os.pathsep}{env['PATH']}")

    done = subprocess.run(["bash", "-c", walkthrough()], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    out, said = done.stdout, done.stderr  # results on stdout, summaries and errors on stderr
    context = f"stdout:\n{out[-4000:]}\nstderr:\n{said[-4000:]}"

    assert "validate exit 0" in out, context
    assert "collisions refused: exit 2" in out, context
    assert re.search(r"^69 copied, 0 already there, 0 failed", said, re.MULTILINE), context
    assert "relocated copies are clean" in out, context
    assert re.search(rf"^127\.0\.0\.1:{REGISTRY_PORT}/packages/landsat@sha256:[0-9a-f]{{64}}$", out,
                     re.MULTILINE), context
    assert "every digest verified" in said and "pulled package is clean" in out, context
    drift = re.findall(r"^CHANGED (\S+): size: expected (\d+), observed (\d+)", said, re.MULTILINE)
    assert len(drift) == 1 and drift[0][0].endswith("/blue") and int(drift[0][2]) == int(drift[0][1]) + 1, context
    assert out.rstrip().endswith("validate exit 1"), context
    assert _port_free(REGISTRY_PORT), "the walkthrough's registry is still running"
