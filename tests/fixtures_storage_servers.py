"""pytest fixtures for real Swift and WebDAV servers on 127.0.0.1, one of each per session, stopped by PID.

* ``swift_server`` -> :class:`SwiftServer`: a one-replica OpenStack Swift (PyPI ``swift==2.38.3``) with
  TempAuth (user ``test:tester``, key ``testing``, an account admin), SLO, COPY and TempURL, and Swift's S3
  API (``s3api``) in region :data:`SWIFT_S3_REGION`, which, like AWS, refuses a request signed for another
  region (access key ``test:tester``, secret ``testing``, buckets are the account's containers); four
  processes (proxy, account, container, object) on free ports. TempAuth keeps its tokens in a cache:
  the proxy runs one process (``workers = 0``) with an in-process dict cache filter instead of memcached.
* ``webdav_server`` -> :class:`WebDavServer`: wsgidav + cheroot in a thread of the test process, basic
  auth (``tester`` / ``testing``), serving a scratch directory.

Configuration as validated in ``/work/shared/notes/servers.md`` (appendix). The rings are built in a
subprocess: importing swift's modules pulls eventlet into the test process, which we keep out of it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devservers.process import free_port, stop, wait_http
from devservers.webdav import WebDavServer, wsgidav_server

BIN = os.path.dirname(sys.executable)
#: the region of the Swift proxy's S3 API: not us-east-1, so a client left at the default is refused
SWIFT_S3_REGION = "eu-central-1"


@dataclass(frozen=True)
class SwiftServer:
    auth_url: str
    user: str
    key: str
    storage_url: str
    token: str
    root: Path

    @property
    def s3_endpoint(self) -> str:
        """The proxy's S3 API (``s3api``): http://127.0.0.1:PORT, path-style, region SWIFT_S3_REGION."""
        return self.auth_url.removesuffix("/auth/v1.0")

    def connection(self):
        from swiftclient.client import Connection

        return Connection(authurl=self.auth_url, user=self.user, key=self.key, retries=1)


DICTCACHE = '''
import threading, time as _time
class DictCache:
    def __init__(self): self._d, self._l = {}, threading.Lock()
    def _live(self, k):
        v = self._d.get(k)
        if v and v[1] and v[1] < _time.time(): self._d.pop(k, None); return None
        return v
    def get(self, key, raise_on_error=False):
        with self._l:
            v = self._live(key); return v[0] if v else None
    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False):
        with self._l: self._d[key] = (value, _time.time() + time if time else 0)
    def incr(self, key, delta=1, time=0):
        with self._l:
            v = self._live(key); n = (int(v[0]) if v else 0) + delta
            self._d[key] = (n, v[1] if v else 0); return n
    def decr(self, key, delta=1, time=0): return self.incr(key, -delta, time)
    def delete(self, key, server_key=None):
        with self._l: self._d.pop(key, None)
    def get_multi(self, keys, server_key): return [self.get(k) for k in keys]
    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0):
        for k, v in mapping.items(): self.set(k, v, time=time)
def filter_factory(global_conf, **local_conf):
    cache = DictCache()
    def make(app):
        def mw(env, start_response):
            env["swift.cache"] = cache
            return app(env, start_response)
        return mw
    return make
'''

RINGS = '''
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for arg in sys.argv[2:]:
    name, port = arg.split(":")
    rb = RingBuilder(0, 1, 0)  # part_power=0, replicas=1, min_part_hours=0
    rb.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                "device": "sdb1", "weight": 1})
    rb.rebalance()
    rb.get_ring().save(f"{etc}/{name}.ring.gz")
'''


@pytest.fixture(scope="session")
def swift_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwiftServer]:
    from swiftclient import client as sc

    d = tmp_path_factory.mktemp("swift")
    etc, devs, py = d / "etc", d / "srv", d / "py"
    for p in (etc, devs / "sdb1", py):
        p.mkdir(parents=True)
    (py / "dictcache.py").write_text(DICTCACHE)
    used: list[int] = []
    port: dict[str, int] = {}
    for s in ("proxy", "account", "container", "object"):
        port[s] = free_port(used)
        used.append(port[s])
    user = pwd.getpwuid(os.getuid()).pw_name
    (etc / "swift.conf").write_text(
        "[swift-hash]\nswift_hash_path_prefix = testprefix\nswift_hash_path_suffix = testsuffix\n\n"
        "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
    common = (f"[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {{port}}\nworkers = 0\nuser = {user}\n"
              f"swift_dir = {etc}\ndevices = {devs}\nmount_check = false\ndisable_fallocate = true\n\n")
    for s in ("account", "container", "object"):
        (etc / f"{s}-server.conf").write_text(
            common.format(port=port[s])
            + f"[pipeline:main]\npipeline = {s}-server\n\n[app:{s}-server]\nuse = egg:swift#{s}\n")
    subprocess.run([sys.executable, "-c", RINGS, str(etc)]
                   + [f"{s}:{port[s]}" for s in ("account", "container", "object")],
                   check=True, capture_output=True, timeout=60)
    proxy = textwrap.dedent(f"""\
        [DEFAULT]
        bind_ip = 127.0.0.1
        bind_port = {port['proxy']}
        workers = 0
        user = {user}
        swift_dir = {etc}

        [pipeline:main]
        pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo symlink proxy-logging proxy-server

        [app:proxy-server]
        use = egg:swift#proxy
        account_autocreate = true
        allow_account_management = true

        [filter:tempauth]
        use = egg:swift#tempauth
        user_test_tester = testing .admin

        [filter:cache]
        paste.filter_factory = dictcache:filter_factory

        [filter:s3api]
        use = egg:swift#s3api
        location = {SWIFT_S3_REGION}
        """)  # noqa: E501
    for name, egg in {"catch_errors": "", "gatekeeper": "", "healthcheck": "",
                      "proxy-logging": "proxy_logging", "listing_formats": "", "bulk": "",
                      "tempurl": "", "copy": "", "slo": "", "dlo": "", "symlink": ""}.items():
        proxy += f"\n[filter:{name}]\nuse = egg:swift#{egg or name}\n"
    (etc / "proxy-server.conf").write_text(proxy)
    env = {**os.environ, "PYTHONPATH": str(py)}
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for s in ("account", "container", "object", "proxy"):
            log = open(d / f"{s}.log", "wb")  # noqa: SIM115 - closed in finally
            logs.append(log)
            procs.append(subprocess.Popen(
                [os.path.join(BIN, f"swift-{s}-server"), str(etc / f"{s}-server.conf"), "-v"],
                stdout=log, stderr=subprocess.STDOUT, env=env))
        base = f"http://127.0.0.1:{port['proxy']}"
        wait_http(base + "/healthcheck", proc=procs[-1])
        deadline = time.time() + 30
        while True:  # backends may still be importing
            try:
                url, tok = sc.get_auth(base + "/auth/v1.0", "test:tester", "testing")
                sc.put_container(url, tok, "probe")
                break
            except Exception:
                if time.time() > deadline or any(p.poll() is not None for p in procs):
                    raise
                time.sleep(0.1)
        yield SwiftServer(auth_url=base + "/auth/v1.0", user="test:tester", key="testing",
                          storage_url=url, token=tok, root=d)
    finally:
        for p in procs:  # SIGTERM to each PID first, then wait: the four stop in parallel (~2 s)
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            stop(p, timeout=15)
        for log in logs:
            log.close()


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDavServer]:
    with wsgidav_server(tmp_path_factory.mktemp("dav")) as server:
        yield server


@contextlib.contextmanager
def fresh_container(conn, prefix: str = "c") -> Iterator[str]:
    """A new container on the swiftclient connection ``conn``; it and its segment container (made by
    large uploads) are emptied and deleted afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    conn.put_container(name)
    try:
        yield name
    finally:
        for container in (name, f"{name}_segments"):
            try:
                for obj in conn.get_container(container, full_listing=True)[1]:
                    conn.delete_object(container, obj["name"])
                conn.delete_container(container)
            except Exception:  # noqa: S110 - a segment container may never have been made
                pass


@pytest.fixture
def swift_container(swift_server: SwiftServer) -> Iterator[str]:
    """A fresh container (and its segment container), emptied and deleted afterwards."""
    with fresh_container(swift_server.connection()) as name:
        yield name
