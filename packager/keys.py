"""``stac-packager-keys`` / ``python -m packager.keys``: manage the encrypted keystore of storage keys.

    init     make a key pair: the private key PEM (0600) and a new, empty keystore holding the public key
    add      seal a named S3 / Swift / WebDAV key (secrets from stdin or environment variables, never argv)
    list     names, kinds, capabilities, clear fields and fingerprints, never secrets (--json)
    remove   drop a key
    verify   decrypt every key with the private key (checks the private key and that nothing was tampered with)
    rotate   new key pair; every key re-encrypted; the keystore replaced atomically

The keystore is ``--keystore`` (default ``$STAC_PACKAGER_KEYSTORE`` or ``keystore.json``): a path, or an
object-store URL read and written with the storage profiles of the settings file (``--settings`` or
``$STAC_PACKAGER_CONFIG``; ``{env: NAME}`` values are read from the environment).

Secrets of ``add``: ``--secret-from-env FIELD=VAR`` reads a field from an environment variable; the
others are read from stdin, one per line, in the order the kind lists them (s3: access_key_id then
secret_access_key; swift: key, or token with --storage-url; webdav: password), or as ``field=value``
lines; on a terminal they are prompted for without echo.

Swift keys authenticate with TempAuth (``--auth-url`` + ``--username``, secret ``key``), a pre-authenticated
``--storage-url`` (secret ``token``), or Keystone v3: ``--auth-url`` (the identity v3 endpoint) +
``--username`` + ``--project-name`` or ``--project-id`` (+ ``--user-domain-name``/``-id``,
``--project-domain-name``/``-id``, ``--region-name``, ``--interface``; ``--auth-version 3`` is implied by
any of them), secret ``key`` = the user's password (``password`` is accepted as its name, e.g.
``--secret-from-env password=OS_PASSWORD``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from packager.errors import ConfigError, PackagerError
from packager.keystore import (
    DEFAULT_BITS,
    KINDS,
    SWIFT_KEYSTONE_FIELDS,
    Keystore,
    KeystoreError,
    PrivateKeySource,
    auth_kind,
    generate_private_key,
    write_private_key,
)

KEYSTORE_ENV = "STAC_PACKAGER_KEYSTORE"
CONFIG_ENV = "STAC_PACKAGER_CONFIG"


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _registry(args: argparse.Namespace):
    """A storage registry for a keystore on an object store, from the settings file's profiles."""
    if not _is_remote(args.keystore):
        return None
    import yaml

    from packager.profiles import StorageProfile
    from packager.rewrite import BucketOverride, RewriteRules
    from packager.stores import StoreRegistry

    path = args.settings or os.environ.get(CONFIG_ENV)
    data: dict[str, Any] = yaml.safe_load(Path(path).read_text()) or {} if path else {}

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"env"}:
                name = str(value["env"])
                if name not in os.environ:
                    raise ConfigError(f"settings reference the environment variable {name}, which is not set")
                return os.environ[name]
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    profiles = [StorageProfile(**resolve(p)) for p in (data.get("storage") or {}).get("profiles", [])]
    buckets = [BucketOverride(**b) for b in (data.get("rewrite") or {}).get("buckets", [])]
    return StoreRegistry(profiles, RewriteRules(buckets=buckets))


def _read_line(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt + ": ")
    line = sys.stdin.readline()
    if not line:
        raise ConfigError(f"stdin ended before {prompt} was given")
    return line.rstrip("\r\n")


def _passphrase(env: str | None, stdin: bool, what: str = "passphrase") -> str | None:
    if env:
        if env not in os.environ:
            raise ConfigError(f"environment variable {env} (the {what}) is not set")
        return os.environ[env]
    if stdin:
        return _read_line(what)
    return None


def _private_source(args: argparse.Namespace) -> PrivateKeySource:
    passphrase = _passphrase(args.passphrase_env, args.passphrase_stdin)
    if args.private_key_env:
        if args.private_key_env not in os.environ:
            raise ConfigError(f"environment variable {args.private_key_env} (the private key) is not set")
        return PrivateKeySource(pem=os.environ[args.private_key_env], passphrase=passphrase,
                                label=f"from ${args.private_key_env}")
    if args.private_key:
        return PrivateKeySource(path=Path(args.private_key), passphrase=passphrase, label=f"file {args.private_key}")
    raise ConfigError("give the private key: --private-key FILE or --private-key-env VAR")


def _load(args: argparse.Namespace, private: PrivateKeySource | None = None) -> Keystore:
    return Keystore.load(args.keystore, registry=_registry(args), private_key=private)


def _save(keystore: Keystore, args: argparse.Namespace) -> str:
    return keystore.save(args.keystore, registry=_registry(args))


def _console(stream=None):
    from rich.console import Console

    stream = stream or sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=True, width=None if stream.isatty() else 200)


# -- commands -------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    out = Path(args.private_key_out)
    if not args.force:
        if out.exists():
            raise ConfigError(f"{out} exists: refusing to overwrite a private key (use --force)")
        if not _is_remote(args.keystore) and Path(args.keystore).exists():
            raise ConfigError(f"keystore {args.keystore} exists: refusing to replace it (use --force)")
    passphrase = _passphrase(args.passphrase_env, args.passphrase_stdin)
    key = generate_private_key(args.bits)
    keystore = Keystore.create(key, source=args.keystore)
    write_private_key(out, key, passphrase)
    where = _save(keystore, args)
    _console().print(f"keystore [bold]{where}[/] created, fingerprint {keystore.fingerprint}\n"
                     f"private key written to {out} (mode 0600{', passphrase-protected' if passphrase else ''}); "
                     "keep it secret, e.g. in a Kubernetes Secret")
    return 0


def _secrets_for_add(args: argparse.Namespace) -> dict[str, str]:
    kind = args.type
    if kind == "s3":
        required = [] if args.public else ["access_key_id", "secret_access_key"]
    elif kind == "swift":
        required = ["token"] if args.storage_url and not args.auth_url else ["key"]
    else:
        required = ["password"]
    allowed = KINDS[kind].secrets
    # a Keystone password is the swift key's 'key' (as the swift CLI's --os-password is its key)
    aliases = {"password": "key"} if kind == "swift" else {}
    secrets: dict[str, str] = {}
    for spec in args.secret_from_env or []:
        field, sep, var = spec.partition("=")
        if not sep:
            if len(required) != 1:
                raise ConfigError(f"--secret-from-env {spec}: write FIELD=VAR (a {kind} key needs "
                                  f"{', '.join(required)})")
            field, var = required[0], spec
        field = aliases.get(field, field)
        if field not in allowed:
            raise ConfigError(f"--secret-from-env: {field!r} is not a secret of a {kind} key ({', '.join(allowed)})")
        if var not in os.environ:
            raise ConfigError(f"--secret-from-env: environment variable {var} is not set")
        secrets[field] = os.environ[var]
    for field in required:
        if field in secrets:
            continue
        line = _read_line(f"{args.name} {field}")
        name, sep, value = line.partition("=")
        name = aliases.get(name, name)
        if sep and name in allowed:
            secrets[name] = value
            if name != field and field not in secrets:
                secrets[field] = _read_line(f"{args.name} {field}")
        else:
            secrets[field] = line
    missing = [f for f in required if not secrets.get(f)]
    if missing:
        raise ConfigError(f"key {args.name!r}: no value for {', '.join(missing)}")
    return secrets


def cmd_add(args: argparse.Namespace) -> int:
    keystore = _load(args)
    fields = {"endpoint": args.endpoint, "region": args.region, "bucket": args.bucket, "auth_url": args.auth_url,
              "username": args.username, "storage_url": args.storage_url, "url": args.url,
              **{f: getattr(args, f) for f in SWIFT_KEYSTONE_FIELDS}}
    if args.public:
        if args.type != "s3":
            raise ConfigError("--public is for S3 keys (anonymous, read-only)")
        fields["skip_signature"] = True
    given = {k for k, v in fields.items() if v not in (None, False)}
    unknown = sorted(given - set(KINDS[args.type].clear))
    if unknown:
        raise ConfigError(f"a {args.type} key has no {', '.join('--' + u.replace('_', '-') for u in unknown)}")
    secrets = _secrets_for_add(args)
    capabilities = ("read",) if args.read_only else None
    entry = keystore.add(args.name, args.type, fields=fields, secrets=secrets, capabilities=capabilities,
                         replace=args.replace)
    _save(keystore, args)
    _console().print(f"added key [bold]{entry.name}[/] ({entry.kind}, {'+'.join(entry.capabilities)}) to "
                     f"{keystore.source}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    keystore = _load(args)
    rows = [{"name": e.name, "kind": e.kind, "auth": auth_kind(e.kind, e.fields), "capabilities": list(e.capabilities),
             "fields": e.fields, "fingerprint": e.fingerprint, "created": e.created} for e in keystore.entries()]
    if args.json:
        print(json.dumps({"keystore": keystore.source, "fingerprint": keystore.fingerprint, "keys": rows}, indent=2))
        return 0
    from rich.table import Table

    table = Table(title=f"{keystore.source}  ({keystore.fingerprint})")
    for column in ("name", "kind", "auth", "capabilities", "fields", "fingerprint", "created"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["auth"], ",".join(r["capabilities"]),
                      " ".join(f"{k}={v}" for k, v in r["fields"].items()), r["fingerprint"], r["created"] or "")
    _console().print(table)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    keystore = _load(args)
    keystore.remove(args.name)
    _save(keystore, args)
    _console().print(f"removed key [bold]{args.name}[/] from {keystore.source}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    keystore = _load(args, _private_source(args))
    names = keystore.verify()
    _console().print(f"{len(names)} key(s) of {keystore.source} decrypt with this private key "
                     f"({keystore.fingerprint}): {', '.join(names) or '-'}")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    keystore = _load(args, _private_source(args))
    new_passphrase = _passphrase(args.new_passphrase_env, args.new_passphrase_stdin, "new passphrase")
    new_key = generate_private_key(args.bits)
    fresh = keystore.rotated(new_key)  # decrypts everything with the old key first: fails before writing
    out = Path(args.new_private_key_out)
    staged = out.with_name(f".{out.name}.rotating")
    write_private_key(staged, new_key, new_passphrase)
    try:
        _save(fresh, args)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, out)
    _console().print(f"rotated {len(fresh.names())} key(s) of {fresh.source}: fingerprint {keystore.fingerprint} -> "
                     f"{fresh.fingerprint}; new private key in {out} (0600). The old private key no longer opens it.")
    return 0


# -- argument parsing -----------------------------------------------------------------------------------


def _private_key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--private-key", metavar="FILE", help="private key PEM file (e.g. a mounted Secret)")
    p.add_argument("--private-key-env", metavar="VAR", help="environment variable holding the private key PEM")
    p.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding its passphrase")
    p.add_argument("--passphrase-stdin", action="store_true", help="read its passphrase from stdin")


def parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: '--secret VALUE' must be an error, not an abbreviation of --secret-from-env
    ap = argparse.ArgumentParser(prog="stac-packager-keys", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    ap.add_argument("--keystore", default=os.environ.get(KEYSTORE_ENV, "keystore.json"),
                    help=f"keystore path or URL (default ${KEYSTORE_ENV} or keystore.json)")
    ap.add_argument("--settings", help=f"settings YAML whose storage profiles reach a remote keystore "
                                       f"(default ${CONFIG_ENV})")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", allow_abbrev=False, help="make a key pair and a new keystore")
    p.add_argument("--private-key-out", required=True, metavar="FILE", help="where to write the private key (0600)")
    p.add_argument("--passphrase-env", metavar="VAR", help="protect the private key with this env var's value")
    p.add_argument("--passphrase-stdin", action="store_true", help="protect the private key with a stdin line")
    p.add_argument("--bits", type=int, default=DEFAULT_BITS)
    p.add_argument("--force", action="store_true", help="overwrite an existing private key / keystore")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("add", allow_abbrev=False, help="seal a named key (secrets from stdin or env vars, never arguments)")
    p.add_argument("name")
    p.add_argument("--type", required=True, choices=sorted(KINDS))
    for opt in ("endpoint", "region", "bucket", "auth-url", "username", "storage-url", "url"):
        p.add_argument(f"--{opt}")
    for field in SWIFT_KEYSTONE_FIELDS:  # Swift with Keystone v3, spelled as the openstack CLI's --os-* options
        p.add_argument(f"--{field.replace('_', '-')}", dest=field, help="Swift / Keystone v3")
    p.add_argument("--public", action="store_true", help="S3: anonymous access to a public bucket (read-only)")
    p.add_argument("--read-only", action="store_true", help="capabilities: read only (default: read and write)")
    p.add_argument("--secret-from-env", action="append", metavar="FIELD=VAR",
                   help="read secret FIELD from environment variable VAR (repeatable)")
    p.add_argument("--replace", action="store_true", help="replace a key of the same name")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("list", allow_abbrev=False, help="list keys (never secrets)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("remove", allow_abbrev=False, help="remove a key")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("verify", allow_abbrev=False, help="decrypt every key with the private key")
    _private_key_args(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("rotate", allow_abbrev=False, help="new key pair; re-encrypt every key; replace the keystore atomically")
    _private_key_args(p)
    p.add_argument("--new-private-key-out", required=True, metavar="FILE")
    p.add_argument("--new-passphrase-env", metavar="VAR")
    p.add_argument("--new-passphrase-stdin", action="store_true")
    p.add_argument("--bits", type=int, default=DEFAULT_BITS)
    p.set_defaults(func=cmd_rotate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeystoreError, ConfigError, PackagerError) as exc:
        from rich.text import Text

        _console(sys.stderr).print(Text("error: ", style="red") + Text(str(exc)))
        return 1


if __name__ == "__main__":
    sys.exit(main())
