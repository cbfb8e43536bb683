"""``make demo``: the whole chain offline on embedded defaults, or on your settings file.

    python -m demo run                    # offline: local STAC API, stand-in bytes, rewrite rules
    python -m demo run --config my.yaml   # your STAC API and stores (or STAC_PACKAGER_CONFIG=my.yaml)
    python -m demo ui                     # the Dagster UI on the demo's instance and settings

Offline, a ``rustac serve`` STAC API on 127.0.0.1 serves 45 real Sentinel-2, Landsat, Sentinel-1 and
NAIP items whose hrefs stay as published. Stand-in bytes for each asset are generated under
``demo-output/source/<host>/...`` and one rewrite rule per public prefix maps it there: the lock reads
the bytes through the rules, as a platform reads a CDN's objects from its own bucket.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from demo.standins import DEMO_EXCLUDED_ASSET_KEYS, rewrite_rules_for, write_standins
from pipelines.settings import CONFIG_ENV, Settings, load_settings

DEMO_DIR = Path(__file__).resolve().parent
DATA = DEMO_DIR / "data"
REPO = DEMO_DIR.parent
DEFAULT_OUTPUT = REPO / "demo-output"
DEMO_PORT = 7822
DEMO_COLLECTIONS = ["sentinel-2-l2a", "landsat-c2-l2", "sentinel-1-grd", "naip"]
console = Console()


def demo_settings(output: Path, api_url: str, rules: list[dict]) -> dict:
    """The embedded defaults: every asset of the demo items, locked with sha256, relocated, deep-validated."""
    return {
        "stac_api": {"url": api_url},
        "search": {"collections": DEMO_COLLECTIONS, "bbox": [-180, -90, 180, 90], "limit": 20},
        "package": {"url": str(output / "package"), "checksum": True,
                    "exclude_asset_keys": sorted(DEMO_EXCLUDED_ASSET_KEYS), "workdir": str(output / "work")},
        "relocation": {"target": str(output / "relocated"), "memory_limit_mib": 64},
        "validation": {"deep": True},
        "rewrite": {"rules": rules},
    }


def prepare_instance(output: Path) -> Path:
    """A persistent DAGSTER_HOME, so the UI later shows the demo's runs, metadata and checks."""
    home = output / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def materialize(settings: Settings) -> tuple[bool, dict]:
    import dagster as dg

    from pipelines.assets import CHAIN
    from pipelines.settings import build_resources

    result = dg.materialize(CHAIN, resources=build_resources(settings), instance=dg.DagsterInstance.get(),
                            tags={"stac-packager/trigger": "make-demo"}, raise_on_error=False)
    metadata = {}
    for asset in ("search_results", "items_parquet", "assets_lock", "relocated_assets", "validation_report"):
        events = result.asset_materializations_for_node(asset)
        metadata[asset] = {k: v.value for k, v in events[0].metadata.items()} if events else {}
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    return result.success and all(checks.values()), {"assets": metadata, "checks": checks}


def report(settings: Settings, outcome: dict, seconds: float, home: Path | None, config_path: Path) -> None:
    meta, checks = outcome["assets"], outcome["checks"]
    table = Table(title="stac-packager: the chain", show_lines=False)
    table.add_column("asset")
    table.add_column("result")
    rows = [
        ("search results", "returned {returned} items in {pages} page(s)", "search_results"),
        ("items.parquet", "{items} items, {assets} assets", "items_parquet"),
        ("assets.lock.parquet", "{rows} objects locked, {total_mib} MiB, {checksums} sha256", "assets_lock"),
        ("relocated assets", "{copied} copied, {already_present} already there, {failed} failed, "
                             "{throughput_mib_per_s} MiB/s", "relocated_assets"),
        ("validation report", "{ok} ok, {changed} changed, {missing} missing, {error} errors", "validation_report"),
    ]
    for label, template, asset in rows:
        try:
            table.add_row(label, template.format(**meta[asset]))
        except KeyError:
            table.add_row(label, "[red]not materialized[/red]")
    table.add_row("checks", ", ".join(f"{k}: {'passed' if v else 'FAILED'}" for k, v in checks.items()))
    console.print(table)
    package = settings.package.url if "://" in settings.package.url else os.path.abspath(settings.package.url)
    console.print(f"\n[bold]Package[/bold]          {package}")
    console.print(f"  items            {package}/items.parquet")
    console.print(f"  lock             {package}/assets.lock.parquet")
    console.print(f"  relocated lock   {package}/relocated/assets.lock.parquet")
    console.print(f"  validation       {package}/validation/report.parquet")
    console.print(f"[bold]Relocated copies[/bold] {settings.relocation.target}")
    console.print(f"[bold]Settings[/bold]         {config_path}")
    if home:
        console.print("\nOpen the Dagster UI on these runs:  [bold]make ui[/bold]   (then http://127.0.0.1:3000)")
        console.print(f"  which runs: DAGSTER_HOME={home} {CONFIG_ENV}={config_path} "
                      f"dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000")
    console.print(f"\nWall time: {seconds:.1f} s")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    output = Path(args.output).resolve()
    config = args.config or os.environ.get(CONFIG_ENV)
    if config:
        settings = load_settings(config)
        home = prepare_instance(output)
        ok, outcome = materialize(settings)
        report(settings, outcome, time.perf_counter() - started, home, Path(config).resolve())
        return 0 if ok else 1

    from devservers.rustac import rustac_api

    summary = write_standins(DATA / "items.ndjson", output / "source")
    console.print(f"stand-in bytes: {summary.describe()}")
    rules = rewrite_rules_for(summary.hosts, output / "source")
    inputs = sorted((DATA / "collections").glob("*.json")) + [DATA / "items.ndjson"]
    with rustac_api(inputs, port=args.port, workdir=output / "stac-api") as api_url:
        console.print(f"local STAC API (rustac serve): {api_url}")
        raw = demo_settings(output, api_url, rules)
        config_path = output / "settings.yaml"
        config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        home = prepare_instance(output)
        ok, outcome = materialize(Settings.model_validate(raw))
    report(Settings.model_validate(raw), outcome, time.perf_counter() - started, home, config_path)
    return 0 if ok else 1


def ui(args: argparse.Namespace) -> int:
    """Serve the demo's STAC API again and open the Dagster UI on the demo's instance and settings."""
    from devservers.rustac import rustac_api

    output = Path(args.output).resolve()
    config_path = output / "settings.yaml"
    if not config_path.exists():
        console.print("[red]no demo output yet: run `make demo` first[/red]")
        return 2
    env = {**os.environ, "DAGSTER_HOME": str(output / "dagster_home"), CONFIG_ENV: str(config_path)}
    inputs = sorted((DATA / "collections").glob("*.json")) + [DATA / "items.ndjson"]
    with rustac_api(inputs, port=args.port, workdir=output / "stac-api"):
        console.print("Dagster UI on http://127.0.0.1:3000 (Ctrl-C to stop)")
        cmd = [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"),
               "-h", "127.0.0.1", "-p", "3000"]
        try:
            return subprocess.call(cmd, cwd=REPO, env=env)
        except KeyboardInterrupt:
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for name, fn in (("run", run), ("ui", ui)):
        p = sub.add_parser(name)
        p.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where the demo writes (default demo-output/)")
        p.add_argument("--port", type=int, default=DEMO_PORT, help="port of the local STAC API")
        p.set_defaults(fn=fn)
        if name == "run":
            p.add_argument("--config", help=f"your settings file (else ${CONFIG_ENV}, else the offline demo)")
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        args = parser.parse_args(["run", *(argv or [])])
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
