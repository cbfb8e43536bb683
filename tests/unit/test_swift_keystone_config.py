"""Swift with Keystone v3: profile fields, OS_* fallbacks, keystore keys and error messages (no server).

The store against a real Keystone is tested in tests/integration/test_swift_keystone.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from packager.credentials import swift_auth_version, swift_env_fallback
from packager.errors import AccessDenied, ConfigError, TransientStoreError
from packager.keystore import Keystore, PrivateKeySource, auth_kind, generate_private_key
from packager.locations import parse_href
from packager.profiles import StorageProfile
from packager.stores.swift import KeystoneAuth, SwiftStore, build_swift_store, keystone_auth_error

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Kv3-Pa55-0d9c8b7a-do-not-leak"
AUTH_URL = "https://keystone.example:5000/v3"
KEYSTONE = {"auth_url": AUTH_URL, "user": "alice", "key": PASSWORD, "project_name": "geo"}
OS_ENV = {"OS_AUTH_URL": AUTH_URL, "OS_USERNAME": "alice", "OS_PASSWORD": PASSWORD, "OS_PROJECT_NAME": "geo",
          "OS_USER_DOMAIN_NAME": "Users", "OS_PROJECT_DOMAIN_NAME": "Projects", "OS_REGION_NAME": "RegionTwo",
          "OS_IDENTITY_API_VERSION": "3"}


def _profile(**fields) -> StorageProfile:
    return StorageProfile(name="os", url="swift://box", **fields)


def _build(profile: StorageProfile) -> SwiftStore:
    store = build_swift_store(parse_href("swift://box"), profile)
    store.close()
    return store


@pytest.mark.parametrize(("fields", "version"), [
    ({"auth_url": "http://h/auth/v1.0", "user": "a:b", "key": "k"}, "1"),
    ({"auth_url": "http://h:5000/v3", "user": "a", "key": "k"}, "3"),  # a v3 identity URL
    ({"auth_url": "http://h:5000", "user": "a", "key": "k", "project_name": "p"}, "3"),  # a Keystone-only field
    ({"auth_url": "http://h:5000/v3", "user": "a", "key": "k", "auth_version": "1.0"}, "1"),  # said explicitly
    ({"auth_version": "v3"}, "3"), ({"auth_version": 3}, "3"), ({}, None),
])
def test_auth_version_is_explicit_or_inferred(fields, version):
    assert swift_auth_version(_profile(**fields)) == version


def test_keystone_v2_is_refused():
    with pytest.raises(ValidationError, match="v2.0 API is gone"):
        _profile(auth_version="2.0")
    with pytest.raises(ConfigError, match="identity v2.0 API"):
        _build(_profile(auth_url="http://h:5000/v2.0", auth_version="3", user="a", key="k", project_name="p"))


def test_profile_builds_a_keystone_store_with_cli_spellings():
    # username/password (the WebDAV fields) and endpoint_type are accepted for user/key and interface
    store = _build(_profile(auth_url="https://keystone.example:5000", username="alice", password=PASSWORD,
                            project_id="0123abcd", user_domain_id="users", region_name="RegionTwo",
                            endpoint_type="internal"))
    auth = store._keystone
    assert isinstance(auth, KeystoneAuth) and store._auth_url is None and store._key is None
    assert auth.identity_url == "https://keystone.example:5000/v3"  # versionless: /v3 added, as swiftclient does
    assert (auth.username, auth.project_id, auth.user_domain_id, auth.interface) == ("alice", "0123abcd", "users",
                                                                                      "internal")
    assert auth.os_options() == {"service_type": "object-store", "endpoint_type": "internal",
                                 "region_name": "RegionTwo"}
    assert PASSWORD not in repr(auth)
    plugin = auth.plugin()  # domains default to the 'default' domain (by id) where none is given
    assert plugin.auth_url == "https://keystone.example:5000/v3"


def test_missing_keystone_fields_are_named(monkeypatch):
    for name in OS_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"uses Keystone v3 but lacks key \(the password\), project_name or "
                                          r"project_id.*OS_AUTH_URL, OS_USERNAME, OS_PASSWORD"):
        _build(_profile(auth_version="3", auth_url=AUTH_URL, user="alice"))


def test_os_variables_fill_what_a_keystone_profile_leaves_unset():
    profile, used = swift_env_fallback(_profile(auth_version="3", project_name="mine"), OS_ENV)
    assert (profile.auth_url, profile.user, profile.key.get_secret_value()) == (AUTH_URL, "alice", PASSWORD)
    assert profile.project_name == "mine"  # the profile's own value wins
    assert (profile.user_domain_name, profile.project_domain_name, profile.region_name) == ("Users", "Projects",
                                                                                           "RegionTwo")
    assert "OS_PROJECT_NAME" not in used and {"OS_AUTH_URL", "OS_PASSWORD"} <= set(used)
    assert all(PASSWORD not in name for name in used)


def test_os_variables_make_a_credentialless_profile_keystone():
    profile, used = swift_env_fallback(_profile(), {**OS_ENV, "OS_IDENTITY_API_VERSION": ""})
    assert profile.auth_version == "3" and profile.project_name == "geo" and "OS_AUTH_URL" in used
    store = _build(profile)
    assert store._keystone.region_name == "RegionTwo" and store._keystone.user_domain_name == "Users"
    # an id in the profile keeps the environment's name of the same thing out
    profile, _ = swift_env_fallback(_profile(auth_version="3", project_id="p-id"), OS_ENV)
    assert profile.project_name is None and profile.project_id == "p-id"
    # interface: the keystone v2 spelling of endpoint types is understood, nonsense is refused
    profile, _ = swift_env_fallback(_profile(auth_version="3"), {**OS_ENV, "OS_ENDPOINT_TYPE": "internalURL"})
    assert profile.interface == "internal"
    with pytest.raises(ConfigError, match="OS_INTERFACE='sideways'"):
        swift_env_fallback(_profile(auth_version="3"), {**OS_ENV, "OS_INTERFACE": "sideways"})
    with pytest.raises(ConfigError, match="OS_IDENTITY_API_VERSION"):
        swift_env_fallback(_profile(), {**OS_ENV, "OS_IDENTITY_API_VERSION": "2.0"})


@pytest.mark.parametrize("fields", [
    {"auth_url": "http://h/auth/v1.0", "user": "a:b", "key": "k"},  # TempAuth
    {"storage_url": "http://h/v1/AUTH_x", "token": "t"},  # pre-authenticated
    {"keystore_key": "k"},  # credentials from a keystore key only
])
def test_os_variables_never_reach_other_profiles(fields):
    profile = _profile(**fields)
    assert swift_env_fallback(profile, OS_ENV) == (profile, [])


def test_keystone_auth_errors_are_typed_and_never_hold_the_password():
    from keystoneauth1 import exceptions as ks

    auth = KeystoneAuth(auth_url=AUTH_URL, username="alice", password=PASSWORD, project_name="geo",
                        region_name="RegionTwo")
    cases = {
        ks.Unauthorized(f"The request you have made requires authentication. {PASSWORD}"): AccessDenied,
        ks.ConnectFailure(f"Unable to establish connection to {AUTH_URL}/auth/tokens"): TransientStoreError,
        ks.EndpointNotFound("no"): ConfigError, ks.EmptyCatalog("empty"): ConfigError,
        ks.NotFound(): ConfigError, ks.BadRequest(): ConfigError, ks.InternalServerError(): TransientStoreError,
    }
    for exc, kind in cases.items():
        error = keystone_auth_error(exc, auth, "swift://box", lambda t: t.replace(PASSWORD, "***"))
        assert isinstance(error, kind), (exc, error)
        assert AUTH_URL in str(error) and "swift://box" in str(error) and PASSWORD not in str(error)
    denied = keystone_auth_error(ks.Unauthorized(), auth, "swift://box")
    assert "user 'alice' (domain default), project 'geo' (domain default)" in str(denied)
    assert "check the user name, the password" in str(denied)
    nowhere = keystone_auth_error(None, auth, "swift://box")
    assert "no object-store endpoint" in str(nowhere) and "region 'RegionTwo'" in str(nowhere)


# -- keystore keys ------------------------------------------------------------------------------------------


def test_keystone_key_in_the_keystore_fills_the_profile():
    from packager.stores import StoreRegistry

    keystore = Keystore.create(generate_private_key(2048))
    entry = keystore.add("ks", "swift", fields={"auth_url": AUTH_URL, "username": "alice", "project_name": "geo",
                                                "user_domain_name": "Users", "region_name": "RegionTwo"},
                         secrets={"key": SecretStr(PASSWORD)})
    assert entry.fields["auth_version"] == "3" and auth_kind("swift", entry.fields) == "keystone v3"
    assert auth_kind("swift", {"auth_url": "http://h/auth/v1.0"}) == "tempauth v1.0"
    assert auth_kind("swift", {"storage_url": "http://h/v1/AUTH_x"}) == "storage url + token"
    registry = StoreRegistry([StorageProfile(name="os", url="swift://box", keystore_key="ks")], keystore=keystore)
    store = registry.store_for(parse_href("swift://box/x"))
    try:
        auth = store._inner._keystone
        assert (auth.username, auth.project_name, auth.user_domain_name, auth.region_name) == (
            "alice", "geo", "Users", "RegionTwo")
        assert auth.password == PASSWORD
    finally:
        store.close()
    with pytest.raises(ConfigError, match="needs project_name or project_id"):
        keystore.add("half", "swift", fields={"auth_url": AUTH_URL, "username": "a", "auth_version": "3"},
                     secrets={"key": "k"})
    with pytest.raises(ConfigError, match="interface 'sideways'"):
        keystore.add("odd", "swift", fields={"auth_url": AUTH_URL, "username": "a", "project_name": "p",
                                             "interface": "sideways"}, secrets={"key": "k"})


def _cli(tmp_path: Path, *args: str, stdin: str = "", env: dict | None = None, check: bool = True):
    proc = subprocess.run([sys.executable, "-m", "packager.keys", "--keystore", str(tmp_path / "ks.json"), *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_adds_and_lists_keystone_keys_without_secrets(tmp_path):
    _cli(tmp_path, "init", "--private-key-out", str(tmp_path / "pk.pem"), "--bits", "2048")
    keystone_args = ["--type", "swift", "--auth-url", AUTH_URL, "--username", "alice", "--project-name", "geo",
                     "--user-domain-name", "Default", "--project-domain-name", "Default", "--region-name", "RegionOne",
                     "--interface", "internal"]
    # the password from an environment variable, under either name ...
    _cli(tmp_path, "add", "from-env", *keystone_args, "--secret-from-env", "password=OS_PASSWORD",
         env={"OS_PASSWORD": PASSWORD})
    # ... or from stdin
    added = _cli(tmp_path, "add", "from-stdin", *keystone_args, stdin=f"password={PASSWORD}\n")
    assert PASSWORD not in " ".join(added.args)
    _cli(tmp_path, "add", "tempauth", "--type", "swift", "--auth-url", "http://h/auth/v1.0", "--username", "a:b",
         stdin="k\n")
    listed = json.loads(_cli(tmp_path, "list", "--json").stdout)
    table = _cli(tmp_path, "list").stdout
    kinds = {k["name"]: k["auth"] for k in listed["keys"]}
    assert kinds == {"from-env": "keystone v3", "from-stdin": "keystone v3", "tempauth": "tempauth v1.0"}
    fields = next(k["fields"] for k in listed["keys"] if k["name"] == "from-env")
    assert fields == {"auth_url": AUTH_URL, "username": "alice", "project_name": "geo", "user_domain_name": "Default",
                      "project_domain_name": "Default", "region_name": "RegionOne", "interface": "internal",
                      "auth_version": "3"}
    assert "keystone v3" in table
    for text in (json.dumps(listed), table, (tmp_path / "ks.json").read_text()):
        assert PASSWORD not in text
    opened = Keystore.load(tmp_path / "ks.json", private_key=PrivateKeySource(path=tmp_path / "pk.pem"))
    assert opened.credentials("from-stdin").secrets["key"].get_secret_value() == PASSWORD
    # Keystone fields are for Swift keys only; no secret on the command line
    refused = _cli(tmp_path, "add", "x", "--type", "s3", "--project-name", "geo", stdin="a\nb\n", check=False)
    assert refused.returncode == 1 and "a s3 key has no --project-name" in refused.stderr
    refused = _cli(tmp_path, "add", "y", *keystone_args, "--password", PASSWORD, check=False)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
