"""``stac-packager``: the engine of the Dagster chain as a command line."""

from __future__ import annotations

import argparse
import sys
import traceback

from packager.cli.runtime import EXIT_FAILED, EXIT_IO, EXIT_OK, EXIT_USAGE, Failed, Runtime, UsageError

DESCRIPTION = """\
Turn STAC items into a durable, verifiable, relocatable package: the same engine and the same package
layout as the Dagster chain (search -> items.parquet -> assets.lock.parquet -> relocated -> validation).

Storage profiles, rewrite rules and defaults come from the settings file the Dagster deployment uses
(--config FILE, or STAC_PACKAGER_CONFIG); secrets in it stay {env: NAME} references, read from the
environment at run time.
"""

EXIT_CODES = """\
exit codes:
  0  ok
  1  drift or failed rows: validate found objects that differ from the lock, build could not lock
     some assets, relocate could not copy some, a pulled layer did not match its digest,
     materialize failed a step or a check
  2  usage or configuration error: bad option, missing or malformed input, bad settings file,
     unset {env: NAME} variable, unusable key template (collisions)
  3  I/O or store error: a store, the STAC API or the registry could not be reached or refused
"""

COMMANDS = {
    "search": "STAC API search -> NDJSON or STAC GeoParquet (or a package's search/ files)",
    "build": "items (STAC JSON, NDJSON, GeoParquet, a package folder) -> package: items.parquet + assets.lock.parquet",
    "inspect": "what a package holds: items, collections, asset keys, known bytes",
    "validate": "check a lock against the live objects; one JSON line per asset; exit 1 on drift",
    "relocate": "copy every locked object to a target, verified; --dry-run prints the planned keys",
    "push": "push a package folder to an OCI registry (oras)",
    "pull": "pull a package from an OCI registry, every layer's digest verified",
    "keys": "manage the encrypted keystore (python -m packager.keys)",
    "materialize": "run the Dagster chain in-process on a settings file",
}


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (defaults suppressed: the top level sets them)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="settings YAML (as for Dagster); default $STAC_PACKAGER_CONFIG, else built-in defaults")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or summaries on stderr; errors only")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="machine-readable JSON on stdout (summary objects / JSON lines)")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an error")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="stac-packager", description=DESCRIPTION, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("-q", "--quiet", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                title="commands (common options: --config FILE, --quiet, --json, --debug)")

    parser.commands = {}  # type: ignore[attr-defined]

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        parser.commands[name] = sub.add_parser(name, parents=[common], help=COMMANDS[name], description=COMMANDS[name],
                              epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
        return parser.commands[name]

    p = command("search")
    p.add_argument("--url", help="STAC API landing page (default: stac_api.url of the settings)")
    p.add_argument("--collections", action="append", help="collection ids (comma-separated or repeated)")
    p.add_argument("--bbox", help="xmin,ymin,xmax,ymax in WGS84 degrees")
    p.add_argument("--intersects", metavar="FILE|JSON", help="GeoJSON geometry (or Feature), inline or a file")
    p.add_argument("--datetime", help="RFC 3339 instant or interval: 2024-06-01/2024-06-30, ../2024-01-01")
    p.add_argument("--ids", action="append", help="item ids (comma-separated or repeated)")
    p.add_argument("--filter", help="CQL2 text, or CQL2 JSON (inline or a file starting with '{')")
    p.add_argument("--query", metavar="JSON", help="STAC query extension object (inline JSON or a file)")
    p.add_argument("--sortby", help="e.g. -properties.datetime")
    p.add_argument("--limit", type=int, help="items per page")
    p.add_argument("--max-items", type=int, help="stop after this many items")
    p.add_argument("--method", choices=["POST", "GET"], help="HTTP method (default POST)")
    p.add_argument("--no-default-search", action="store_true",
                   help="ignore the settings file's search: section (only these options)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write items here: .parquet -> STAC GeoParquet, else NDJSON (default: NDJSON on stdout)")
    p.add_argument("--package", metavar="PACKAGE",
                   help="also write search/items.ndjson and search/request.json into this package")
    p.set_defaults(fn="cmd_search")

    p = command("build")
    p.add_argument("input", metavar="INPUT",
                   help="STAC Item/ItemCollection JSON, NDJSON, STAC GeoParquet, a package folder (ours or stacpkg's), "
                        "or - for stdin")
    p.add_argument("package", metavar="PACKAGE", nargs="?",
                   help="package folder or object-store prefix (default: package.url of the settings)")
    p.add_argument("--checksum", action=argparse.BooleanOptionalAction, default=None,
                   help="read every object and lock its sha256 (default: package.checksum)")
    p.add_argument("--exclude-asset-keys", action="append", metavar="KEYS",
                   help="asset keys not to lock (comma-separated or repeated; default: package.exclude_asset_keys)")
    p.add_argument("--include-asset-keys", action="append", metavar="KEYS", help="lock only these asset keys")
    p.add_argument("--concurrency", type=int, help="HEAD requests in flight (default: package.lock_concurrency)")
    p.add_argument("--break-lease", action="store_true",
                   help="take over the package's (and target's) lease from another run; only if it is dead")
    p.set_defaults(fn="cmd_build")

    p = command("inspect")
    p.add_argument("package", metavar="PACKAGE", nargs="?", help="package folder or URL (default: package.url)")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    p.set_defaults(fn="cmd_inspect")

    p = command("validate")
    p.add_argument("package", metavar="PACKAGE", nargs="?",
                   help="package folder or URL (default: package.url), or a lock .parquet file")
    p.add_argument("--lock", default="auto",
                   help="auto (relocated lock if there is one, else the source lock), source, relocated, or a path")
    p.add_argument("--deep", action=argparse.BooleanOptionalAction, default=None,
                   help="also re-read every object and compare its sha256 (default: validation.deep)")
    p.add_argument("--only-failures", action="store_true", help="print JSON lines only for rows that are not ok")
    p.add_argument("--report", metavar="PATH|URL", help="write the report parquet here instead of the package")
    p.add_argument("--no-report", action="store_true", help="do not write validation/report.parquet")
    p.add_argument("--concurrency", type=int, help="requests in flight")
    p.set_defaults(fn="cmd_validate")

    p = command("relocate")
    p.add_argument("package", metavar="PACKAGE", nargs="?",
                   help="package folder or URL (default: package.url); a lock .parquet file with --dry-run")
    p.add_argument("--target", help="where copies go: a folder or s3://bucket/prefix (default: relocation.target)")
    p.add_argument("--key-template", help="destination key, e.g. '{collection}/{item_id}/{asset_key}{ext}'")
    p.add_argument("--lock", default="source", help="source (default), relocated, or a lock path")
    p.add_argument("--memory-limit", metavar="SIZE",
                   help="bytes in flight across all copies: 256MiB, 1GiB (a bare number is MiB)")
    p.add_argument("--chunk-size", metavar="SIZE", help="part size (>= 5MiB)")
    p.add_argument("--verify", choices=["checksum", "size"],
                   help="after each copy: re-read and compare sha256 (default) or size only")
    p.add_argument("--concurrency", type=int, help="copies in flight")
    p.add_argument("--alternate-name", help="name of the alternate href added to relocated/items.parquet")
    p.add_argument("--dry-run", action="store_true",
                   help="print 'source -> destination' per object and refuse collisions; copy nothing")
    p.add_argument("--break-lease", action="store_true",
                   help="take over the package's (and target's) lease from another run; only if it is dead")
    p.set_defaults(fn="cmd_relocate")

    for name in ("push", "pull"):
        p = command(name)
        if name == "push":
            p.add_argument("package", metavar="PACKAGE", help="local package folder")
            p.add_argument("reference", metavar="REF", help="HOST[:PORT]/NAME:TAG, e.g. registry.example.org/pkgs/alps:v1")
        else:
            p.add_argument("reference", metavar="REF", help="HOST[:PORT]/NAME:TAG or HOST[:PORT]/NAME@sha256:DIGEST")
            p.add_argument("-o", "--output", required=True, metavar="DIR", help="new (or empty) folder to pull into")
        p.add_argument("--plain-http", action=argparse.BooleanOptionalAction, default=None,
                       help="HTTP instead of HTTPS (default: only for localhost / 127.x registries)")
        p.add_argument("--insecure", action="store_true", help="do not verify the registry's TLS certificate")
        p.add_argument("--auth-backend", choices=["token", "basic"], default="token",
                       help="credentials: ORAS_USER / ORAS_PASS, else the Docker config")
        p.set_defaults(fn=f"cmd_{name}")

    p = command("keys", add_help=False)
    p.add_argument("keys_args", nargs=argparse.REMAINDER, help="arguments of python -m packager.keys")
    p.set_defaults(fn="cmd_keys")

    p = command("materialize")
    p.add_argument("--select", metavar="ASSETS",
                   help="comma-separated assets of the chain (search_results, items_parquet, assets_lock, "
                        "relocated_assets, validation_report); default all")
    p.add_argument("--partition", metavar="KEY", help="partition key, when the settings partition the chain")
    p.set_defaults(fn="cmd_materialize")
    return parser


def _exit_code(exc: BaseException) -> tuple[int, str]:
    """The documented exit code of an error, and its message."""
    from pydantic import ValidationError

    from packager.errors import (
        ConfigError,
        DuplicateAssetError,
        HrefError,
        LockSchemaError,
        PackagerError,
        RowFailures,
        StoreError,
        TemplateError,
    )
    from packager.oci import OciContentError, OciError, OciIntegrityError

    message = str(exc) or type(exc).__name__
    if isinstance(exc, Failed | RowFailures | OciIntegrityError):
        return EXIT_FAILED, message
    if isinstance(exc, UsageError | ConfigError | TemplateError | LockSchemaError | DuplicateAssetError | HrefError
                  | OciContentError | ValidationError):
        return EXIT_USAGE, message
    if isinstance(exc, StoreError | OciError):
        return EXIT_IO, message
    try:
        from packager.items import ItemsError
        from packager.search import SearchError
    except ImportError:  # pragma: no cover
        ItemsError = SearchError = ()  # noqa: N806
    if isinstance(exc, ItemsError):
        return EXIT_USAGE, message
    if isinstance(exc, SearchError):
        status = getattr(exc, "status_code", None)
        return (EXIT_USAGE if status is not None and 400 <= status < 500 and status != 429 else EXIT_IO), message
    if isinstance(exc, FileNotFoundError):
        return EXIT_USAGE, f"{exc.filename or message}: no such file"
    if isinstance(exc, OSError):
        return EXIT_IO, message
    if isinstance(exc, PackagerError):
        code = getattr(exc, "code", "")
        return (EXIT_USAGE if code in ("keystore", "config") else EXIT_IO), message
    return EXIT_IO, f"unexpected {type(exc).__name__}: {message} (run with --debug for the traceback)"


def _keys_split(args: list[str]) -> int | None:
    """The index of a ``keys`` command word (after global options), else None."""
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--config":
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        return i if token == "keys" else None
    return None


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        split = _keys_split(args_list)
        if split is not None:  # everything after `keys` belongs to python -m packager.keys, --help included
            args = parser.parse_args([*args_list[:split], "keys"])
            args.keys_args = args_list[split + 1:]
        else:
            args, extra = parser.parse_known_args(args_list)
            if extra:
                target = parser.commands.get(args.command, parser) if args.command else parser
                target.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors (message already printed)
        return int(exc.code or 0)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from packager.cli import commands

    runtime = Runtime(args)
    try:
        return getattr(commands, args.fn)(runtime)
    except KeyboardInterrupt:
        runtime.err.print("interrupted", markup=False)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - every error becomes a message and a documented exit code
        code, message = _exit_code(exc)
        if getattr(args, "debug", False):
            traceback.print_exc()
        label = {EXIT_FAILED: "failed", EXIT_USAGE: "error", EXIT_IO: "I/O error"}.get(code, "error")
        runtime.err.print(f"stac-packager {args.command}: {label}: {message}", markup=False, highlight=False)
        return code
    finally:
        runtime.close()
