"""pytest fixtures for OpenStack Swift behind a real Keystone (identity v3), on 127.0.0.1, stopped by PID.

* ``keystone_server`` -> :class:`devservers.keystone.KeystoneServer`: Keystone from its own venv
  (``scripts/keystone-venv.sh``, ``.cache/keystone-venv`` or ``$KEYSTONE_VENV``), sqlite, fernet tokens.
  Without that venv the tests that use it **skip** with the reason, except under CI (``CI`` set), where
  they fail: CI runs ``make system-deps``, which builds it.
* ``keystone_swift`` -> :class:`KeystoneSwift`: a second Swift proxy-server process whose pipeline has
  ``authtoken keystoneauth`` instead of ``tempauth``, sharing the account/container/object servers (and
  rings) of ``swift_server``; Keystone's catalog lists it as ``object-store``
  (``http://127.0.0.1:<port>/v1/AUTH_$(project_id)s``). The storage user has the ``member`` role on its
  project (an ``operator_roles`` entry of keystoneauth); the proxy validates tokens as user ``swift`` with
  the ``service`` role. The middleware's token cache is off (``token_cache_time = -1``), so a token revoked
  in Keystone is refused by the next request (with the default cache that takes up to 300 s).
* ``keystone_container`` -> a fresh container in the Keystone project's account, deleted afterwards.

The proxy imports keystonemiddleware from the project's venv (the ``test`` extra carries it).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devservers.keystone import (
    BUILD_HINT,
    KeystoneServer,
    SwiftAccounts,
    keystone,
    provision_swift,
    venv_problem,
)
from devservers.process import free_port, stop, tail, wait_http
from tests.fixtures_storage_servers import fresh_container

BIN = os.path.dirname(sys.executable)

_FILTERS = {"catch_errors": "", "gatekeeper": "", "healthcheck": "", "proxy-logging": "proxy_logging",
            "listing_formats": "", "bulk": "", "tempurl": "", "copy": "", "slo": "", "dlo": "", "symlink": ""}


@dataclass(frozen=True)
class KeystoneSwift:
    """Swift behind Keystone: what a client needs (``auth_url`` + user/password/project/domains)."""

    keystone: KeystoneServer
    accounts: SwiftAccounts
    proxy_url: str
    storage_url: str
    proxy_log: Path
    region: str = "RegionOne"

    @property
    def auth_url(self) -> str:
        return self.keystone.auth_url

    def profile_fields(self) -> dict[str, object]:
        """Storage-profile fields for a Keystone v3 Swift profile (password in ``key``)."""
        return {"auth_url": self.auth_url, "auth_version": "3", "user": self.accounts.username,
                "key": self.accounts.password, "project_name": self.accounts.project_name,
                "user_domain_name": self.accounts.user_domain, "project_domain_name": self.accounts.project_domain,
                "region_name": self.region}

    def session(self):
        """A keystoneauth1 session of the storage user (for setup and inspection in tests)."""
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        return session.Session(auth=v3.Password(
            auth_url=self.auth_url, username=self.accounts.username, password=self.accounts.password,
            project_name=self.accounts.project_name, user_domain_name=self.accounts.user_domain,
            project_domain_name=self.accounts.project_domain))

    def connection(self):
        """A swiftclient connection authenticated through Keystone."""
        from swiftclient.client import Connection

        return Connection(session=self.session(), os_options={"region_name": self.region}, retries=1)


@pytest.fixture(scope="session")
def keystone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneServer]:
    problem = venv_problem()
    if problem:
        message = f"{problem}: {BUILD_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Keystone tests (make system-deps builds the venv): {message}")
        pytest.skip(message)
    with keystone(tmp_path_factory.mktemp("keystone")) as server:
        yield server


def _proxy_conf(*, port: int, swift_etc: Path, user: str, ks: KeystoneServer, accounts: SwiftAccounts) -> str:
    conf = textwrap.dedent(f"""\
        [DEFAULT]
        bind_ip = 127.0.0.1
        bind_port = {port}
        workers = 0
        user = {user}
        swift_dir = {swift_etc}

        [pipeline:main]
        pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl authtoken keystoneauth copy slo dlo symlink proxy-logging proxy-server

        [app:proxy-server]
        use = egg:swift#proxy
        account_autocreate = true

        [filter:authtoken]
        paste.filter_factory = keystonemiddleware.auth_token:filter_factory
        www_authenticate_uri = {ks.auth_url}
        auth_url = {ks.auth_url}
        auth_type = password
        username = {accounts.service_user}
        password = {accounts.service_password}
        project_name = {accounts.service_project}
        user_domain_id = default
        project_domain_id = default
        region_name = {ks.region}
        interface = public
        delay_auth_decision = true
        token_cache_time = -1
        http_connect_timeout = 10
        http_request_max_retries = 1

        [filter:keystoneauth]
        use = egg:swift#keystoneauth
        operator_roles = admin, member

        [filter:cache]
        paste.filter_factory = dictcache:filter_factory
        """)  # noqa: E501
    for name, egg in _FILTERS.items():
        conf += f"\n[filter:{name}]\nuse = egg:swift#{egg or name}\n"
    return conf


@pytest.fixture(scope="session")
def keystone_swift(keystone_server: KeystoneServer, swift_server, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[KeystoneSwift]:
    """A Keystone-authenticating proxy in front of ``swift_server``'s storage servers (see the module doc)."""
    d = tmp_path_factory.mktemp("swift-keystone")
    # swift_server's layout (tests/fixtures_storage_servers.py): rings + swift.conf in etc/, the in-process
    # cache filter module in py/
    swift_etc, swift_py = swift_server.root / "etc", swift_server.root / "py"
    port = free_port()
    proxy_url = f"http://127.0.0.1:{port}"
    accounts = provision_swift(keystone_server, proxy_url)
    conf = d / "proxy-server.conf"
    conf.write_text(_proxy_conf(port=port, swift_etc=swift_etc, user=pwd.getpwuid(os.getuid()).pw_name,
                                ks=keystone_server, accounts=accounts))
    log_path = d / "proxy.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([os.path.join(BIN, "swift-proxy-server"), str(conf), "-v"], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(swift_py)})
    try:
        wait_http(f"{proxy_url}/healthcheck", proc=proc, log_path=log_path)
        conn = None
        deadline = time.time() + 60
        while True:  # a first authenticated request proves the whole chain: Keystone, authtoken, keystoneauth
            try:
                conn = KeystoneSwift(keystone=keystone_server, accounts=accounts, proxy_url=proxy_url,
                                     storage_url="", proxy_log=log_path).connection()
                conn.put_container("probe")
                break
            except Exception as exc:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the Keystone Swift proxy is not serving: {exc}\n{tail(log_path)}") from exc
                time.sleep(0.2)
        yield KeystoneSwift(keystone=keystone_server, accounts=accounts, proxy_url=proxy_url, storage_url=conn.url,
                            proxy_log=log_path, region=keystone_server.region)
    finally:
        stop(proc, timeout=15)
        log.close()


@pytest.fixture
def keystone_container(keystone_swift: KeystoneSwift) -> Iterator[str]:
    """A fresh container (and its segment container) in the Keystone project's account, deleted afterwards."""
    with fresh_container(keystone_swift.connection(), prefix="ks") as name:
        yield name
