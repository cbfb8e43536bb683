"""The encrypted keystore: sealing, opening, tampering, capabilities, the registry and the CLI (as a subprocess)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from packager.errors import AccessDenied, ConfigError
from packager.keystore import (
    Keystore,
    KeystoreError,
    PrivateKeySource,
    generate_private_key,
    write_private_key,
)
from packager.locations import parse_href
from packager.lock import LockRow, lock_writer
from packager.profiles import StorageProfile
from packager.relocate import RelocationSettings, relocate
from packager.stores import StoreRegistry

ROOT = Path(__file__).resolve().parents[2]
S3_SECRET = "s3-Secret-9f8e7d6c-do-not-leak"
SWIFT_SECRET = "swift-Key-1a2b3c4d-do-not-leak"
DAV_SECRET = "dav-Pass-5e6f7a8b-do-not-leak"
PASSPHRASE = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def private_key():
    return generate_private_key(2048)  # 2048 keeps the suite quick; the CLI defaults to 3072


@pytest.fixture
def keystore_file(tmp_path, private_key) -> Path:
    ks = Keystore.create(private_key)
    ks.add("mirror", "s3", fields={"endpoint": "http://127.0.0.1:9000", "region": "us-east-1", "bucket": "mirror"},
           secrets={"access_key_id": "AKIDMIRROR", "secret_access_key": S3_SECRET})
    ks.add("os", "swift", fields={"auth_url": "http://127.0.0.1:8080/auth/v1.0", "username": "test:tester"},
           secrets={"key": SWIFT_SECRET})
    ks.add("dav", "webdav", fields={"username": "tester"}, secrets={"password": DAV_SECRET})
    ks.add("public", "s3", fields={"region": "us-west-2", "skip_signature": True})
    path = tmp_path / "keystore.json"
    ks.save(path)
    return path


def _pem_file(tmp_path: Path, key, passphrase: str | None = None, name: str = "pk.pem") -> Path:
    return write_private_key(tmp_path / name, key, passphrase)


def test_round_trip_per_kind(keystore_file, private_key, tmp_path):
    ks = Keystore.load(keystore_file, private_key=PrivateKeySource(path=_pem_file(tmp_path, private_key)))
    assert ks.names() == ["dav", "mirror", "os", "public"]
    s3 = ks.credentials("mirror")
    assert s3.secrets["secret_access_key"].get_secret_value() == S3_SECRET
    assert s3.secrets["access_key_id"].get_secret_value() == "AKIDMIRROR"
    assert s3.fields["endpoint"] == "http://127.0.0.1:9000" and s3.capabilities == ("read", "write")
    assert ks.credentials("os").secrets["key"].get_secret_value() == SWIFT_SECRET
    assert ks.credentials("os").profile_update()["user"] == "test:tester"
    assert ks.credentials("dav").secrets["password"].get_secret_value() == DAV_SECRET
    assert S3_SECRET not in repr(s3) and S3_SECRET not in str(s3.profile_update())


def test_secret_never_in_the_file(keystore_file):
    data = keystore_file.read_bytes()
    for secret in (S3_SECRET, SWIFT_SECRET, DAV_SECRET, "AKIDMIRROR"):
        assert data.count(secret.encode()) == 0
        assert data.count(base64.b64encode(secret.encode())) == 0
    assert b"127.0.0.1:9000" in data  # clear fields stay in clear


def test_public_s3_key_is_read_only_by_default(keystore_file):
    ks = Keystore.load(keystore_file)
    assert ks.entry("public").capabilities == ("read",)
    assert ks.entry("mirror").capabilities == ("read", "write")


def test_adding_needs_no_private_key(keystore_file, private_key, tmp_path):
    ks = Keystore.load(keystore_file)  # no private key at all
    ks.add("extra", "webdav", fields={"username": "u"}, secrets={"password": "p-123"})
    ks.save(keystore_file)
    with pytest.raises(KeystoreError, match="needs its private key"):
        ks.credentials("extra")
    opened = Keystore.load(keystore_file, private_key=PrivateKeySource(path=_pem_file(tmp_path, private_key)))
    assert opened.credentials("extra").secrets["password"].get_secret_value() == "p-123"


def test_wrong_private_key(keystore_file, tmp_path):
    other = _pem_file(tmp_path, generate_private_key(2048), name="other.pem")
    ks = Keystore.load(keystore_file, private_key=PrivateKeySource(path=other))
    with pytest.raises(KeystoreError, match=r"the private key does not match this keystore .*\(fingerprint sha256:"
                                            r"[0-9a-f]{64}, expected sha256:[0-9a-f]{64}\)"):
        ks.credentials("mirror")


def test_wrong_and_missing_passphrase(keystore_file, private_key, tmp_path):
    pem = _pem_file(tmp_path, private_key, PASSPHRASE)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    wrong = Keystore.load(keystore_file, private_key=PrivateKeySource(path=pem, passphrase="nope"))
    with pytest.raises(KeystoreError, match="wrong passphrase for the keystore private key"):
        wrong.credentials("mirror")
    missing = Keystore.load(keystore_file, private_key=PrivateKeySource(path=pem))
    with pytest.raises(KeystoreError, match="passphrase-protected"):
        missing.credentials("mirror")
    # the PEM from an environment variable (text), with the right passphrase
    right = Keystore.load(keystore_file, private_key=PrivateKeySource(pem=pem.read_text(), passphrase=PASSPHRASE))
    assert right.credentials("mirror").secrets["secret_access_key"].get_secret_value() == S3_SECRET


def _tampered(path: Path, edit) -> Path:
    doc = json.loads(path.read_text())
    edit({k["name"]: k for k in doc["keys"]}, doc)
    out = path.with_name("tampered.json")
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("edit", [
    pytest.param(lambda keys, doc: keys["mirror"]["sealed"].update(
        ciphertext=base64.b64encode(b"\0" + base64.b64decode(keys["mirror"]["sealed"]["ciphertext"])[1:]).decode()),
        id="ciphertext"),
    pytest.param(lambda keys, doc: keys["mirror"]["fields"].update(endpoint="http://evil.example:9000"),
                 id="clear-field"),
    pytest.param(lambda keys, doc: keys["public"].update(capabilities=["read", "write"]), id="capabilities"),
    pytest.param(lambda keys, doc: keys["mirror"].update(sealed=keys["dav"]["sealed"]), id="swapped-blobs"),
    pytest.param(lambda keys, doc: keys["mirror"].update(name="renamed") or keys.update(mirror=keys["mirror"]),
                 id="renamed"),
])
def test_tampering_is_detected(keystore_file, private_key, tmp_path, edit):
    path = _tampered(keystore_file, edit)
    ks = Keystore.load(path, private_key=PrivateKeySource(path=_pem_file(tmp_path, private_key)))
    name = "renamed" if "renamed" in ks else ("public" if ks.entry("public").capabilities == ("read", "write")
                                              else "mirror")
    with pytest.raises(KeystoreError, match=rf"key '{name}' .*was tampered with / cannot be decrypted"):
        ks.credentials(name)


def test_tampered_public_key_is_detected(keystore_file, tmp_path):
    other = generate_private_key(2048)
    path = _tampered(keystore_file, lambda keys, doc: doc.update(
        public_key=Keystore.create(other).to_bytes().decode().split('"public_key": ')[1].split('",')[0]
        .encode().decode("unicode_escape").strip('"')))
    with pytest.raises(KeystoreError, match="tampered with"):
        Keystore.load(path)


# -- the registry and relocation ------------------------------------------------------------------------


def _opened(keystore_file, private_key, tmp_path) -> Keystore:
    return Keystore.load(keystore_file, private_key=PrivateKeySource(path=_pem_file(tmp_path, private_key)))


def test_registry_fills_profile_from_key_in_memory(keystore_file, private_key, tmp_path):
    ks = _opened(keystore_file, private_key, tmp_path)
    profile = StorageProfile(name="m", url="s3://mirror", keystore_key="mirror")
    registry = StoreRegistry([profile], keystore=ks)
    assert registry.profiles[0].endpoint == "http://127.0.0.1:9000"  # clear field, no decryption needed
    assert registry.profiles[0].secret_access_key is None  # secrets are not kept on the profile
    assert registry.with_endpoint(parse_href("s3://mirror/a")).endpoint == "http://127.0.0.1:9000"
    store = registry.store_for(parse_href("s3://mirror/a"))
    assert store.key_name == "mirror" and store.capabilities == ("read", "write")
    with pytest.raises(ConfigError, match="it is a webdav key"):
        StoreRegistry([StorageProfile(name="x", url="s3://mirror", keystore_key="dav")], keystore=ks)
    with pytest.raises(ConfigError, match="is for bucket 'mirror'"):
        StoreRegistry([StorageProfile(name="x", url="s3://other", keystore_key="mirror")], keystore=ks)
    with pytest.raises(ConfigError, match="take credentials from one place only"):
        StoreRegistry([StorageProfile(name="x", url="s3://mirror", keystore_key="mirror", secret_access_key="s")],
                      keystore=ks)
    no_keystore = StoreRegistry([profile])
    with pytest.raises(ConfigError, match="no keystore is configured"):
        no_keystore.store_for(parse_href("s3://mirror/a"))


def test_read_only_key_refuses_writes_and_relocation(keystore_file, private_key, tmp_path):
    import asyncio

    ks = _opened(keystore_file, private_key, tmp_path)
    registry = StoreRegistry([StorageProfile(name="pub", url="s3://public-data", keystore_key="public")],
                             keystore=ks)
    store = registry.store_for(parse_href("s3://public-data/x"))
    with pytest.raises(AccessDenied, match="keystore key 'public' lacks the 'write' capability"):
        asyncio.run(store.put_bytes("x", b"data"))
    # relocation into the read-only target fails before anything is planned or copied
    src = tmp_path / "src" / "a.bin"
    src.parent.mkdir()
    src.write_bytes(b"abc")
    lock = tmp_path / "lock.parquet"
    with lock_writer(lock) as writer:
        writer.write(LockRow("c", "i", "a", parse_href(src.as_uri()), src.as_uri(), None, 3, None, None,
                             None).as_record())
    with pytest.raises(KeystoreError, match="keystore key 'public' .*read-only.*nothing was copied"):
        relocate(lock, parse_href("s3://public-data/mirror"), registry, tmp_path / "o.parquet",
                 tmp_path / "f.parquet", RelocationSettings())
    assert not (tmp_path / "o.parquet").exists()


# -- the CLI, as a user runs it --------------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str, stdin: str = "", env: dict | None = None, check: bool = True):
    proc = subprocess.run([sys.executable, "-m", "packager.keys", "--keystore", str(tmp_path / "ks.json"), *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_init_add_list_remove_rotate(tmp_path):
    env = {"KS_PASS": PASSPHRASE}
    _cli(tmp_path, "init", "--private-key-out", str(tmp_path / "pk.pem"), "--passphrase-env", "KS_PASS", env=env)
    assert stat.S_IMODE((tmp_path / "pk.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "pk.pem").read_bytes()
    # secrets on stdin (one per line) ...
    add_s3 = _cli(tmp_path, "add", "mirror", "--type", "s3", "--endpoint", "http://127.0.0.1:9000", "--region",
                  "us-east-1", "--bucket", "mirror", stdin=f"AKIDMIRROR\n{S3_SECRET}\n")
    # ... and from environment variables, by name
    add_dav = _cli(tmp_path, "add", "dav", "--type", "webdav", "--username", "tester",
                   "--secret-from-env", "password=DAV_PW", env={"DAV_PW": DAV_SECRET})
    add_swift = _cli(tmp_path, "add", "os", "--type", "swift", "--auth-url", "http://127.0.0.1:8080/auth/v1.0",
                     "--username", "test:tester", "--read-only", stdin=f"key={SWIFT_SECRET}\n")
    _cli(tmp_path, "add", "public", "--type", "s3", "--public", "--region", "us-west-2")
    for proc in (add_s3, add_dav, add_swift):
        assert all(s not in a for a in proc.args for s in (S3_SECRET, DAV_SECRET, SWIFT_SECRET))
    # there is no way to put a secret into argv
    refused = _cli(tmp_path, "add", "x", "--type", "s3", "--secret", "abc", check=False)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr

    data = (tmp_path / "ks.json").read_bytes()
    listing = _cli(tmp_path, "list")
    listed = json.loads(_cli(tmp_path, "list", "--json").stdout)
    for text in (data.decode(), listing.stdout, listing.stderr, json.dumps(listed)):
        for secret in (S3_SECRET, DAV_SECRET, SWIFT_SECRET, "AKIDMIRROR", PASSPHRASE):
            assert secret not in text
    keys = {k["name"]: k for k in listed["keys"]}
    assert keys["mirror"]["capabilities"] == ["read", "write"] and keys["public"]["capabilities"] == ["read"]
    assert keys["os"]["capabilities"] == ["read"] and keys["dav"]["kind"] == "webdav"
    assert listed["fingerprint"].startswith("sha256:") and all(len(k["fingerprint"]) == 16 for k in keys.values())
    assert "mirror" in listing.stdout and "read,write" in listing.stdout

    _cli(tmp_path, "remove", "public")
    assert "public" not in Keystore.load(tmp_path / "ks.json").names()

    old_fp = listed["fingerprint"]
    wrong = _cli(tmp_path, "verify", "--private-key", str(tmp_path / "pk.pem"), "--passphrase-env", "KS_PASS",
                 env={"KS_PASS": "wrong"}, check=False)
    assert wrong.returncode == 1 and "wrong passphrase" in wrong.stderr

    _cli(tmp_path, "rotate", "--private-key", str(tmp_path / "pk.pem"), "--passphrase-env", "KS_PASS",
         "--new-private-key-out", str(tmp_path / "pk2.pem"), env=env)
    assert stat.S_IMODE((tmp_path / "pk2.pem").stat().st_mode) == 0o600
    rotated = Keystore.load(tmp_path / "ks.json", private_key=PrivateKeySource(path=tmp_path / "pk2.pem"))
    assert rotated.fingerprint != old_fp and rotated.names() == ["dav", "mirror", "os"]
    assert rotated.credentials("mirror").secrets["secret_access_key"].get_secret_value() == S3_SECRET
    assert rotated.credentials("os").capabilities == ("read",)
    stale = Keystore.load(tmp_path / "ks.json",
                          private_key=PrivateKeySource(path=tmp_path / "pk.pem", passphrase=SecretStr(PASSPHRASE)))
    with pytest.raises(KeystoreError, match="does not match this keystore"):
        stale.credentials("mirror")
    old = _cli(tmp_path, "verify", "--private-key", str(tmp_path / "pk.pem"), "--passphrase-env", "KS_PASS",
               env=env, check=False)
    assert old.returncode == 1 and "does not match" in old.stderr
    _cli(tmp_path, "verify", "--private-key-env", "NEW_PK", env={"NEW_PK": (tmp_path / "pk2.pem").read_text()})
