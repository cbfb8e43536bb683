"""The ``stac-packager`` command line: the engine of the Dagster chain, one subcommand per step, plus
OCI push/pull of packages. ``main(argv) -> exit code`` (0 ok, 1 drift/failed rows, 2 usage/config, 3 I/O)."""

from packager.cli.main import main

__all__ = ["main"]
