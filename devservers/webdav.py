"""A real WebDAV server (wsgidav + cheroot) on 127.0.0.1, in a thread of the calling process.

wsgidav's CLI cannot set a basic-auth user, so the app is built in process. Its ETags are
``inode-mtime-size`` (whole seconds), not content hashes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebDavServer:
    url: str
    user: str
    password: str
    root: Path

    @property
    def href_origin(self) -> str:
        """The ``webdav://host:port`` form hrefs and storage profiles use."""
        return "webdav://" + self.url.split("://", 1)[1]


@contextmanager
def wsgidav_server(root: Path, *, user: str = "tester", password: str = "testing",
                   threads: int = 16) -> Iterator[WebDavServer]:
    """Serve ``root`` over WebDAV with basic auth for ``user``; stopped on exit."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    app = WsgiDAVApp({
        "provider_mapping": {"/": str(root)},
        "http_authenticator": {"domain_controller": None, "accept_basic": True,
                               "accept_digest": False, "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "verbose": 1, "logging": {"enable_loggers": []},
        "property_manager": True, "lock_storage": True, "dir_browser": {"enable": False}})
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=threads)
    server.prepare()  # binds; the port is known now
    thread = threading.Thread(target=server.serve, daemon=True, name="wsgidav")
    thread.start()
    try:
        yield WebDavServer(url=f"http://127.0.0.1:{server.bind_addr[1]}", user=user, password=password, root=root)
    finally:
        server.stop()
        thread.join(10)
