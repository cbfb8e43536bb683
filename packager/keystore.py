"""An encrypted keystore of named S3 / Swift / WebDAV keys that storage profiles refer to by name.

A keystore is one JSON file::

    {"format": "stac-packager-keystore/1",
     "public_key": "-----BEGIN PUBLIC KEY-----...", "fingerprint": "sha256:<hex of the DER public key>",
     "keys": [{"name": "mirror", "kind": "s3", "capabilities": ["read", "write"],
               "fields": {"endpoint": "https://...", "region": "eu-central-1", "bucket": "mirror"},
               "sealed": {"alg": "RSA-OAEP-SHA256+A256GCM", "wrapped_key": "...", "nonce": "...",
                          "ciphertext": "..."},
               "created": "2025-01-01T00:00:00+00:00"}]}

Non-secret fields stay in clear. The secret fields of each key are sealed with hybrid encryption: a
fresh random AES-256-GCM data key encrypts them, with associated data binding the key's name, kind,
capabilities, clear fields and the keystore's fingerprint (so renaming a key, swapping two keys' sealed
blobs, or editing an endpoint or a capability is detected); the data key is wrapped with RSA-OAEP-SHA256
by the keystore's public key. Anyone holding the file can add keys; only the private key decrypts, and
only when a store that uses the key is opened.

Nothing here imports Dagster. Secrets leave this module only as :class:`pydantic.SecretStr`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets as _secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from packager.atomic import atomic_path
from packager.errors import ConfigError, PackagerError

FORMAT = "stac-packager-keystore/1"
ALG = "RSA-OAEP-SHA256+A256GCM"
CAPABILITIES = ("read", "write")
DEFAULT_BITS = 3072


class KeystoreError(PackagerError):
    """The keystore cannot be read, opened or used; the message says which and how to mend it."""

    code = "keystore"


@dataclass(frozen=True)
class KindSpec:
    """The clear and the secret fields a key of one kind holds."""

    clear: tuple[str, ...]
    secrets: tuple[str, ...]
    profile_fields: Mapping[str, str]  # key field -> StorageProfile field
    schemes: tuple[str, ...]  # location kinds a profile using this key may serve


#: the clear fields of a Swift key that only Keystone v3 has (named as the StorageProfile fields)
SWIFT_KEYSTONE_FIELDS = ("auth_version", "project_name", "project_id", "user_domain_name", "user_domain_id",
                         "project_domain_name", "project_domain_id", "region_name", "interface")

KINDS: dict[str, KindSpec] = {
    "s3": KindSpec(clear=("endpoint", "region", "bucket", "skip_signature"),
                   secrets=("access_key_id", "secret_access_key", "session_token"),
                   profile_fields={"endpoint": "endpoint", "region": "region", "skip_signature": "skip_signature",
                                   "access_key_id": "access_key_id", "secret_access_key": "secret_access_key",
                                   "session_token": "session_token"},
                   schemes=("s3",)),
    # Swift: TempAuth (auth_url + username + key), pre-authenticated (storage_url + token), or Keystone v3
    # (auth_url + username + key = the password + project and domains; auth_version 3)
    "swift": KindSpec(clear=("auth_url", "username", "storage_url", "bucket", *SWIFT_KEYSTONE_FIELDS),
                      secrets=("key", "token"),
                      profile_fields={"auth_url": "auth_url", "username": "user", "storage_url": "storage_url",
                                      "key": "key", "token": "token",
                                      **{f: f for f in SWIFT_KEYSTONE_FIELDS}},
                      schemes=("swift",)),
    "webdav": KindSpec(clear=("url", "username"), secrets=("password",),
                       profile_fields={"username": "username", "password": "password"},
                       schemes=("webdav+http", "webdav+https")),
}


def auth_kind(kind: str, fields: Mapping[str, Any]) -> str:
    """How a key of ``kind`` with these clear fields authenticates, for listings (never a secret)."""
    if kind == "s3":
        return "anonymous" if fields.get("skip_signature") else "access key"
    if kind == "webdav":
        return "basic auth"
    if kind == "swift":
        version = str(fields.get("auth_version") or "")
        if version == "3" or any(fields.get(f) for f in SWIFT_KEYSTONE_FIELDS if f != "auth_version"):
            return "keystone v3"
        if fields.get("auth_url"):
            return "tempauth v1.0"
        return "storage url + token"
    return kind


def default_capabilities(kind: str, fields: Mapping[str, Any], secrets: Mapping[str, Any]) -> tuple[str, ...]:
    """read+write, except a public S3 bucket key (no secret / skip_signature), which can only read."""
    if kind == "s3" and (fields.get("skip_signature") or not any(secrets.values())):
        return ("read",)
    return CAPABILITIES


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def fingerprint_of(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


# -- private keys ------------------------------------------------------------------------------------


def generate_private_key(bits: int = DEFAULT_BITS) -> rsa.RSAPrivateKey:
    if bits < 2048:
        raise ConfigError(f"RSA keys shorter than 2048 bits are refused (asked for {bits})")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_key_pem(key: rsa.RSAPrivateKey, passphrase: str | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def write_private_key(path: Path, key: rsa.RSAPrivateKey, passphrase: str | None = None) -> Path:
    """Write the private key PEM to ``path`` atomically, readable by its owner only (0600)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(private_key_pem(key, passphrase))
        os.chmod(tmp, 0o600)
    return path


def _secret(value: str | SecretStr | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


@dataclass
class PrivateKeySource:
    """Where the keystore's private key comes from: PEM text (an env var), or a file (a mounted Secret).

    Nothing is read until :meth:`load` is called, when a store that needs a key is opened.
    """

    pem: SecretStr | None = None
    path: Path | None = None
    passphrase: SecretStr | None = None
    label: str = "private key"
    _key: rsa.RSAPrivateKey | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.pem, self.passphrase = _secret(self.pem), _secret(self.passphrase)
        if self.path is not None:
            self.path = Path(self.path)
        if self.pem is None and self.path is None:
            raise ConfigError("the keystore needs a private key: give its PEM (e.g. an environment variable) or a file")

    def __repr__(self) -> str:
        return f"PrivateKeySource({self.label})"

    @classmethod
    def from_key(cls, key: rsa.RSAPrivateKey, label: str = "private key") -> PrivateKeySource:
        source = cls(pem=SecretStr(private_key_pem(key).decode()), label=label)
        source._key = key
        return source

    def load(self) -> rsa.RSAPrivateKey:
        if self._key is not None:
            return self._key
        if self.pem is not None and self.pem.get_secret_value().strip():
            data = self.pem.get_secret_value()
            if "\\n" in data and "\n" not in data.strip():
                data = data.replace("\\n", "\n")  # a PEM squeezed into one line of an env file
            raw = data.strip().encode() + b"\n"
        elif self.path is not None:
            try:
                raw = self.path.read_bytes()
            except OSError as exc:
                raise KeystoreError(f"cannot read the keystore private key {self.label}: {exc.strerror}") from None
        else:
            raise KeystoreError(f"the keystore private key {self.label} is empty")
        encrypted = b"ENCRYPTED" in raw[:160]  # PKCS#8 'ENCRYPTED PRIVATE KEY' or 'Proc-Type: 4,ENCRYPTED'
        password = self.passphrase.get_secret_value().encode() if self.passphrase else None
        if password is not None and not password.strip():
            password = None
        if encrypted and password is None:
            raise KeystoreError(f"the keystore private key {self.label} is passphrase-protected: give its "
                                "passphrase (e.g. keystore.passphrase: {env: NAME})")
        try:
            key = serialization.load_pem_private_key(raw, password=password if encrypted else None)
        except ValueError:
            if encrypted:
                raise KeystoreError(f"wrong passphrase for the keystore private key {self.label}") from None
            raise KeystoreError(f"the keystore private key {self.label} is not a PEM private key") from None
        except (TypeError, UnsupportedAlgorithm):
            raise KeystoreError(f"the keystore private key {self.label} is not a PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeystoreError(f"the keystore private key {self.label} is not an RSA key")
        self._key = key
        return key


# -- keys ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyEntry:
    """One named key as the file holds it: clear fields in clear, the secrets sealed."""

    name: str
    kind: str
    capabilities: tuple[str, ...]
    fields: dict[str, Any]
    sealed: dict[str, str]
    created: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "capabilities": list(self.capabilities),
                               "fields": self.fields, "sealed": self.sealed}
        if self.created:
            out["created"] = self.created
        return out

    @property
    def fingerprint(self) -> str:
        """A short, non-secret identifier of this key's sealed content (changes when re-sealed)."""
        return hashlib.sha256(json.dumps(self.sealed, sort_keys=True).encode()).hexdigest()[:16]

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class KeyCredentials:
    """A decrypted key: the secrets are SecretStr and never printed."""

    name: str
    kind: str
    capabilities: tuple[str, ...]
    fields: dict[str, Any]
    secrets: dict[str, SecretStr] = field(repr=False)

    def profile_update(self) -> dict[str, Any]:
        """StorageProfile fields this key fills (clear and secret)."""
        spec = KINDS[self.kind]
        update: dict[str, Any] = {}
        for name, value in {**self.fields, **self.secrets}.items():
            target = spec.profile_fields.get(name)
            if target is not None and value not in (None, ""):
                update[target] = value
        return update


def _aad(fingerprint: str, name: str, kind: str, capabilities: Iterable[str], fields: Mapping[str, Any]) -> bytes:
    return json.dumps({"format": FORMAT, "keystore": fingerprint, "name": name, "kind": kind,
                       "capabilities": sorted(capabilities), "fields": dict(fields)},
                      sort_keys=True, separators=(",", ":")).encode()


def _check_kind_and_fields(name: str, kind: str, fields: Mapping[str, Any], secrets: Mapping[str, Any],
                           capabilities: Iterable[str]) -> None:
    if not name or not isinstance(name, str) or name.strip() != name or "/" in name:
        raise ConfigError(f"key name {name!r} is not usable: give a non-empty name without spaces around it or '/'")
    spec = KINDS.get(kind)
    if spec is None:
        raise ConfigError(f"key {name!r}: kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    unknown = sorted(set(fields) - set(spec.clear))
    if unknown:
        raise ConfigError(f"key {name!r} ({kind}): unknown clear field(s) {', '.join(unknown)}; "
                          f"a {kind} key has {', '.join(spec.clear)}")
    unknown = sorted(set(secrets) - set(spec.secrets))
    if unknown:
        raise ConfigError(f"key {name!r} ({kind}): unknown secret field(s) {', '.join(unknown)}; "
                          f"a {kind} key has {', '.join(spec.secrets)}")
    for url_field in ("endpoint", "auth_url", "storage_url", "url"):
        value = fields.get(url_field)
        if value is not None and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
            raise ConfigError(f"key {name!r}: {url_field} {value!r} is not an http(s) URL")
    if kind == "swift":
        _check_swift_fields(name, fields)
    bad = sorted(set(capabilities) - set(CAPABILITIES))
    if bad or not list(capabilities):
        raise ConfigError(f"key {name!r}: capabilities must be a non-empty subset of read, write (got "
                          f"{', '.join(capabilities) or 'none'})")


def _swift_fields(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """auth_version as '1' or '3', and '3' written out for a key with Keystone fields."""
    from packager.profiles import normalize_auth_version

    try:
        version = normalize_auth_version(fields.get("auth_version"))
    except ConfigError as exc:
        raise ConfigError(f"key {name!r}: {exc}") from None
    if version is None and auth_kind("swift", fields) == "keystone v3":
        version = "3"
    return {**fields, "auth_version": version} if version else fields


def _check_swift_fields(name: str, fields: Mapping[str, Any]) -> None:
    version = fields.get("auth_version")
    if version is not None and str(version) not in ("1", "3"):
        raise ConfigError(f"key {name!r}: auth_version {version!r}: use 1 (TempAuth) or 3 (Keystone v3)")
    interface = fields.get("interface")
    if interface is not None and interface not in ("public", "internal", "admin"):
        raise ConfigError(f"key {name!r}: interface {interface!r}: use public, internal or admin")
    if auth_kind("swift", fields) == "keystone v3":
        if not fields.get("auth_url"):
            raise ConfigError(f"key {name!r}: a Keystone v3 Swift key needs auth_url (the identity v3 endpoint)")
        if not (fields.get("project_name") or fields.get("project_id")):
            raise ConfigError(f"key {name!r}: a Keystone v3 Swift key needs project_name or project_id")


# -- the keystore -------------------------------------------------------------------------------------------


class Keystore:
    """The keys of one keystore file. Adding needs only the file; decrypting needs the private key."""

    def __init__(self, public_key: rsa.RSAPublicKey, entries: Iterable[KeyEntry] = (), *,
                 private_key: PrivateKeySource | None = None, source: str = "keystore") -> None:
        self.public_key = public_key
        self.fingerprint = fingerprint_of(public_key)
        self.source = source
        self.private_key = private_key
        self._entries: dict[str, KeyEntry] = {}
        self._lock = threading.Lock()
        for entry in entries:
            if entry.name in self._entries:
                raise KeystoreError(f"keystore {source} holds key {entry.name!r} twice; key names must be unique")
            self._entries[entry.name] = entry

    def __repr__(self) -> str:
        return f"Keystore({self.source}, {self.fingerprint}, keys={self.names()})"

    # -- creation, files ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, private_key: rsa.RSAPrivateKey, *, source: str = "keystore") -> Keystore:
        return cls(private_key.public_key(), private_key=PrivateKeySource.from_key(private_key), source=source)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "keystore",
                   private_key: PrivateKeySource | None = None) -> Keystore:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise KeystoreError(f"keystore {source} is not JSON: is this a keystore file?") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise KeystoreError(f"keystore {source} has format {found!r}, expected {FORMAT!r}")
        try:
            public_key = serialization.load_pem_public_key(str(doc["public_key"]).encode())
        except (KeyError, ValueError, UnsupportedAlgorithm):
            raise KeystoreError(f"keystore {source} has no readable public key") from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise KeystoreError(f"keystore {source}: the public key is not an RSA key")
        if fingerprint_of(public_key) != doc.get("fingerprint"):
            raise KeystoreError(f"keystore {source} was tampered with: its public key has fingerprint "
                                f"{fingerprint_of(public_key)}, the file says {doc.get('fingerprint')}")
        entries = []
        for raw in doc.get("keys", []):
            try:
                entries.append(KeyEntry(name=raw["name"], kind=raw["kind"],
                                        capabilities=tuple(raw["capabilities"]), fields=dict(raw.get("fields", {})),
                                        sealed=dict(raw["sealed"]), created=raw.get("created")))
            except (KeyError, TypeError):
                raise KeystoreError(f"keystore {source}: a key entry lacks name, kind, capabilities or "
                                    "sealed secrets; the file is damaged") from None
        return cls(public_key, entries, private_key=private_key, source=source)

    def to_bytes(self) -> bytes:
        public = self.public_key.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        doc = {"format": FORMAT, "public_key": public, "fingerprint": self.fingerprint,
               "keys": [e.to_json() for e in sorted(self._entries.values(), key=lambda e: e.name)]}
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def load(cls, url_or_path: str | os.PathLike, *, registry: Any = None,
             private_key: PrivateKeySource | None = None, workdir: Path | None = None) -> Keystore:
        """Read the keystore from a local path or an object-store URL (through ``registry``)."""
        text = str(url_or_path)
        if "://" in text and not text.startswith("file://"):
            import tempfile

            from packager.publish import fetch, package_location

            if registry is None:
                raise ConfigError(f"keystore {text} is on an object store: a storage registry is needed to read it")
            location = package_location(text, registry)
            with tempfile.TemporaryDirectory(prefix="keystore-", dir=workdir) as tmp:
                try:
                    data = fetch(location, registry, Path(tmp)).read_bytes()
                except PackagerError as exc:
                    raise KeystoreError(f"cannot read keystore {location}: {exc}") from None
            return cls.from_bytes(data, source=str(location), private_key=private_key)
        path = Path(text[len("file://"):] if text.startswith("file://") else text)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(f"keystore {path} does not exist: create it with 'stac-packager-keys init'") from None
        except OSError as exc:
            raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from None
        return cls.from_bytes(data, source=str(path), private_key=private_key)

    def save(self, url_or_path: str | os.PathLike, *, registry: Any = None) -> str:
        """Write the keystore atomically: a local file is replaced whole, an object is PUT whole."""
        text = str(url_or_path)
        if "://" in text and not text.startswith("file://"):
            import tempfile

            from packager.publish import package_location, publish

            if registry is None:
                raise ConfigError(f"keystore {text} is on an object store: a storage registry is needed to write it")
            with tempfile.TemporaryDirectory(prefix="keystore-") as tmp:
                local = Path(tmp) / "keystore.json"
                local.write_bytes(self.to_bytes())
                return publish(local, package_location(text, registry), registry, content_type="application/json")
        path = Path(text[len("file://"):] if text.startswith("file://") else text)
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.to_bytes())
        return str(path)

    # -- keys ---------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[KeyEntry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> KeyEntry:
        try:
            return self._entries[name]
        except KeyError:
            held = ", ".join(self.names()) or "no keys"
            raise KeystoreError(f"keystore {self.source} has no key {name!r} (it holds: {held})") from None

    def add(self, name: str, kind: str, *, fields: Mapping[str, Any] | None = None,
            secrets: Mapping[str, str | SecretStr | None] | None = None,
            capabilities: Iterable[str] | None = None, replace: bool = False) -> KeyEntry:
        """Seal ``secrets`` with the public key and add the key (no private key needed)."""
        fields = {k: v for k, v in (fields or {}).items() if v not in (None, "", False)}
        if kind == "swift":
            fields = _swift_fields(name, fields)
        plain = {k: (v.get_secret_value() if isinstance(v, SecretStr) else v)
                 for k, v in (secrets or {}).items() if v not in (None, "")}
        caps = tuple(sorted(set(capabilities))) if capabilities is not None else \
            default_capabilities(kind, fields, plain)
        _check_kind_and_fields(name, kind, fields, plain, caps)
        if name in self._entries and not replace:
            raise KeystoreError(f"keystore {self.source} already has a key {name!r}: remove it first")
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = _secrets.token_bytes(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, json.dumps(plain, sort_keys=True).encode(),
                                              _aad(self.fingerprint, name, kind, caps, fields))
        wrapped = self.public_key.encrypt(data_key, _oaep())
        entry = KeyEntry(name=name, kind=kind, capabilities=caps, fields=dict(fields),
                         sealed={"alg": ALG, "wrapped_key": _b64(wrapped), "nonce": _b64(nonce),
                                 "ciphertext": _b64(ciphertext)},
                         created=datetime.now(UTC).replace(microsecond=0).isoformat())
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        self.entry(name)
        del self._entries[name]

    # -- decryption -----------------------------------------------------------------------------------------
    def _private(self) -> rsa.RSAPrivateKey:
        if self.private_key is None:
            raise KeystoreError(f"keystore {self.source} needs its private key to open a key: configure "
                                "keystore.private_key (or private_key_file)")
        with self._lock:
            key = self.private_key.load()
        actual = fingerprint_of(key.public_key())
        if actual != self.fingerprint:
            raise KeystoreError(f"the private key does not match this keystore {self.source} "
                                f"(fingerprint {actual}, expected {self.fingerprint})")
        return key

    def credentials(self, name: str) -> KeyCredentials:
        """Decrypt key ``name``: its secrets as SecretStr. Tampering or a wrong key raise KeystoreError."""
        entry = self.entry(name)
        private = self._private()
        tampered = KeystoreError(f"key {name!r} of keystore {self.source} was tampered with / cannot be decrypted "
                                 "(its name, kind, capabilities, clear fields or sealed secrets were changed)")
        if entry.kind not in KINDS or entry.sealed.get("alg") != ALG:
            raise tampered
        try:
            data_key = private.decrypt(_unb64(entry.sealed["wrapped_key"]), _oaep())
            plain = AESGCM(data_key).decrypt(_unb64(entry.sealed["nonce"]), _unb64(entry.sealed["ciphertext"]),
                                             _aad(self.fingerprint, entry.name, entry.kind, entry.capabilities,
                                                  entry.fields))
            values = json.loads(plain)
        except (KeyError, ValueError, InvalidTag, TypeError):
            raise tampered from None
        if not isinstance(values, dict):
            raise tampered
        return KeyCredentials(name=entry.name, kind=entry.kind, capabilities=entry.capabilities,
                              fields=dict(entry.fields), secrets={k: SecretStr(str(v)) for k, v in values.items()})

    def require(self, name: str, capability: str, what: str = "") -> KeyCredentials:
        """The decrypted key, if it holds ``capability`` (verified: the capability list is authenticated)."""
        creds = self.credentials(name)
        if capability not in creds.capabilities:
            raise KeystoreError(
                f"keystore key {name!r} lacks the {capability!r} capability (it has: {', '.join(creds.capabilities)})"
                + (f"; {what}" if what else "")
                + f". Use a key with {capability} access, or add one: stac-packager-keys add NAME ...")
        return creds

    def verify(self) -> list[str]:
        """Decrypt every key (raises on the first that fails); the names verified."""
        for name in self.names():
            self.credentials(name)
        return self.names()

    def rotated(self, new_private_key: rsa.RSAPrivateKey) -> Keystore:
        """A new keystore sealed for ``new_private_key`` holding the same keys (decrypted with the old key)."""
        opened = [self.credentials(name) for name in self.names()]
        fresh = Keystore.create(new_private_key, source=self.source)
        for creds in opened:
            fresh.add(creds.name, creds.kind, fields=creds.fields, secrets=creds.secrets,
                      capabilities=creds.capabilities)
        return fresh
