"""What ``stac-packager relocate PACKAGE --json`` does, without the Dagster settings layer, as a process to kill.

``python -m tests.crash_driver CONFIG.json``; CONFIG holds ``package`` (a local folder with
``assets.lock.parquet``), ``target`` (URL), ``profiles`` (storage profiles, secrets inline: the file is
the test's own) and optionally ``settings`` (RelocationSettings fields) and ``break_lease``. It holds the
package lease, relocates (the engine holds the target lease and cleans up), publishes
``relocated/assets.lock.parquet`` and prints the summary as one JSON line. The CLI starts Dagster's
resource machinery first (≈2-3 s of imports); the crash tests start many processes, so they use this.
Exit codes as the CLI's: 0 ok, 1 failed rows, 3 lease held / store error.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from packager.errors import PackagerError, StoreError
from packager.lease import LeaseHeld
from packager.package import LAYOUT, package_lease
from packager.profiles import StorageProfile
from packager.publish import package_location, publish
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry

MiB = 1 << 20


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    registry = StoreRegistry([StorageProfile(**p) for p in config.get("profiles", [])])
    pkg = Path(config["package"])
    root = package_location(str(pkg), registry)
    target = package_location(config["target"], registry)
    settings = RelocationSettings(**{"chunk_size": 5 * MiB, "memory_limit": 64 * MiB, "concurrency": 4,
                                     **config.get("settings", {}), "break_lease": bool(config.get("break_lease"))})
    try:
        with package_lease(root, registry, command="relocate", break_lease=settings.break_lease), \
                tempfile.TemporaryDirectory(prefix="crash-driver-") as scratch:
            out = Path(scratch)
            summary = relocate(pkg / LAYOUT.lock, target, registry, out / "relocated.parquet",
                               out / "failures.parquet", settings)
            publish(out / "failures.parquet", root.child(LAYOUT.relocation_failures), registry)
            publish(out / "relocated.parquet", root.child(LAYOUT.relocated_lock), registry)
    except LeaseHeld as exc:
        print(f"stac-packager relocate: {exc}", file=sys.stderr)
        return 3
    except (StoreError, PackagerError) as exc:
        print(f"stac-packager relocate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    print(json.dumps({
        "rows": summary.rows, "copied": summary.copied, "already_present": summary.present,
        "failed": len(summary.failures), "retries": summary.retries, "bytes_copied": summary.bytes_copied,
        "seconds": round(summary.seconds, 3), "verified": summary.verified,
        "cleanup": summary.cleanup.as_record() if summary.cleanup else None,
        "lease_taken_over": summary.lease_taken_over,
        "failures": [f.as_record() for f in summary.failures[:5]]}), flush=True)
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
