"""What every command shares: settings and resources, the package's files, output modes, progress, errors.

Settings come from the same YAML file as the Dagster deployment (``--config`` or
``STAC_PACKAGER_CONFIG``) and become the same Dagster resources (:func:`pipelines.settings.build_resources`),
initialised with :func:`dagster.build_resources` so ``{env: NAME}`` references are resolved from the
environment exactly as a Dagster run resolves them. The engine objects the commands call (the store
registry, the STAC API client) are then the ones the assets use.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from packager.errors import ConfigError, PackagerError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3
CONFIG_ENV = "STAC_PACKAGER_CONFIG"


class UsageError(PackagerError):
    """A command line or input the user can mend (exit 2)."""


class Failed(PackagerError):
    """The command ran, and what it checked is not clean (exit 1); details were already printed."""


class Runtime:
    """One command invocation: options, output channels, lazily built settings and resources."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.quiet: bool = bool(getattr(args, "quiet", False))
        self.json: bool = bool(getattr(args, "json", False))
        self.config: str | None = getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or None
        self.out = Console(file=sys.stdout, soft_wrap=True, highlight=False)
        self.err = Console(file=sys.stderr, soft_wrap=True, highlight=False)
        self._stack = ExitStack()
        self._settings = None
        self._resources = None
        self._registry = None

    def close(self) -> None:
        self._stack.close()

    # -- output ------------------------------------------------------------------------------------
    def info(self, message: str) -> None:
        """Human progress notes on stderr (never with --quiet or --json)."""
        if not self.quiet and not self.json:
            self.err.print(message)

    def emit_json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, default=str, sort_keys=True) + "\n")
        sys.stdout.flush()

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        """A rich progress bar on stderr when it is a terminal (not with --quiet); yields ``update(done, total)``."""
        if self.quiet or not self.err.is_terminal:
            yield lambda *a, **k: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.err, transient=False) as bar:
            task = bar.add_task(description, total=total)

            def update(done: int, total_now: int | None = None) -> None:
                if total_now is not None:
                    bar.update(task, completed=done, total=total_now)
                else:
                    bar.update(task, completed=done)

            yield update

    # -- settings and resources ---------------------------------------------------------------------
    @property
    def settings(self):
        if self._settings is None:
            from pipelines.settings import load_settings

            if self.config and not Path(self.config).is_file():
                raise UsageError(f"settings file {self.config} does not exist (from "
                                 f"{'--config' if getattr(self.args, 'config', None) else CONFIG_ENV})")
            self._settings = load_settings(self.config) if self.config else load_settings(None)
        return self._settings

    @property
    def resources(self):
        """The Dagster resources of the settings, initialised: ``{env: NAME}`` resolved from the environment."""
        if self._resources is None:
            import dagster as dg

            from pipelines.settings import build_resources

            try:
                self._resources = self._stack.enter_context(dg.build_resources(build_resources(self.settings)))
            except PackagerError:
                raise
            except Exception as exc:  # dagster's config errors: an unset {env: NAME}, a wrong value
                message = str(exc).strip().splitlines()
                detail = next((line for line in message if "environment variable" in line), message[-1] if message else "")
                raise ConfigError(f"settings {self.config or '(defaults)'}: {detail.strip()}") from None
        return self._resources

    @property
    def registry(self):
        if self._registry is None:
            self._registry = self.resources.storage.registry(self.resources.rewrite)
        return self._registry

    def scratch(self) -> Path:
        """A local working folder for this command, removed at exit."""
        base = None
        if self.config:
            workdir = self.settings.package.workdir
            base = Path(workdir) if workdir else None
        if base:
            base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="stac-packager-cli-", dir=base))
        self._stack.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def package(self, url: str | None) -> Package:
        url = url or self.settings.package.url
        return Package(url, self.registry, self.scratch())


class Package:
    """A package root (folder or object-store prefix): fetch its files locally, publish new ones atomically."""

    def __init__(self, url: str, registry, scratch: Path) -> None:
        from packager.publish import package_location

        self.url = url
        self.registry = registry
        self.root = package_location(url, registry)
        self.scratch = scratch

    @property
    def local(self) -> Path | None:
        from packager.publish import local_path

        return local_path(self.root)

    def href(self, relative: str) -> str:
        return self.root.child(relative).href()

    def exists(self, relative: str) -> bool:
        local = self.local
        if local is not None:
            return (local / relative).is_file()
        import asyncio

        from packager.errors import ObjectNotFound

        location = self.root.child(relative)
        try:
            asyncio.run(self.registry.store_for(location).head(location.key))
        except ObjectNotFound:
            return False
        return True

    def fetch(self, relative: str, *, hint: str = "") -> Path:
        """A local path with the bytes of the package file ``relative``; a missing file is a usage error."""
        from packager.publish import fetch

        if not self.exists(relative):
            raise UsageError(f"package {self.url} has no {relative}{': ' + hint if hint else ''}")
        return fetch(self.root.child(relative), self.registry, self.scratch / "in" / Path(relative).parent)

    def publish(self, local: Path, relative: str, content_type: str | None = None) -> str:
        from packager.publish import publish

        return publish(local, self.root.child(relative), self.registry, content_type=content_type)


def parse_size(text: str, *, default_unit: int = 1 << 20) -> int:
    """``256``, ``256MiB``, ``1GiB``, ``500MB``, ``2g`` -> bytes; a bare number is in MiB."""
    units = {"": default_unit, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000 ** 2,
             "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000 ** 4,
             "tib": 1 << 40}
    raw = text.strip().lower().replace(" ", "")
    number = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(number):]
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"size {text!r} is not a number with an optional unit (e.g. 256MiB, 1GiB, 500MB)") from None
    if unit not in units or value <= 0:
        raise UsageError(f"size {text!r}: unit must be one of B, KB, KiB, MB, MiB, GB, GiB, TB, TiB")
    return int(value * units[unit])


def split_list(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated option values as one list (None if the option was not given)."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
