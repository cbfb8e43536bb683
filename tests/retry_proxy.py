"""A tiny fault-injecting HTTP proxy for retry tests.

The first requests get the scripted error statuses (429 comes with ``Retry-After``), later ones are
forwarded to the upstream API with the original ``Host`` header, so the API's next links point back at
the proxy and paging keeps going through it. It also records the request headers it saw.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from devservers.process import serve_http

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class ProxyState:
    upstream: str
    failures: list[int]
    retry_after: str = "1"
    fail_path: tuple[str, int] | None = None
    """(path prefix, status): every request to that path gets that status, e.g. a 400 for /search."""
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    injected: int = 0
    forwarded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: ProxyState) -> type[BaseHTTPRequestHandler]:
    up = urlsplit(state.upstream)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.seen_headers.append(dict(self.headers))
                status = state.failures.pop(0) if state.failures else None
                if state.fail_path and self.path.startswith(state.fail_path[0]):
                    status = state.fail_path[1]
                if status is not None:
                    state.injected += 1
                else:
                    state.forwarded += 1
            if status is not None:
                self._fail(status)
            else:
                self._forward(body)

        def _fail(self, status: int) -> None:
            payload = b'{"code":"Injected","description":"fault injected by retry_proxy"}'
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", state.retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _forward(self, body: bytes) -> None:
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle

    return Handler


@contextmanager
def retry_proxy(
    upstream: str, failures: list[int], retry_after: str = "1", fail_path: tuple[str, int] | None = None
) -> Iterator[tuple[str, ProxyState]]:
    """Run the proxy on a free loopback port; yields ``(proxy_url, state)`` and stops it on exit."""
    state = ProxyState(
        upstream=upstream.rstrip("/"), failures=list(failures), retry_after=retry_after, fail_path=fail_path
    )
    with serve_http(_handler(state)) as url:
        yield url, state
