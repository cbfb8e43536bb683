"""The fault proxy (devservers.faultproxy) against a tiny local HTTP server, and how the stores classify what
its faults look like to their clients (transient, so retried)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from devservers.faultproxy import FaultProxy
from devservers.process import serve_http
from packager.errors import TransientStoreError

BODY = bytes(range(256)) * 400  # 102,400 bytes


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str | None, bytes]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: bytes, chunked: bool = False) -> None:
        self.send_response(200)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 30000):
                piece = body[start:start + 30000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _Upstream.seen.append((self.command, self.path, self.headers.get("Host"), b""))
        self._answer(BODY, chunked=self.path.startswith("/chunked"))

    do_HEAD = do_GET

    def do_PUT(self) -> None:  # noqa: N802
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            data = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Upstream.seen.append((self.command, self.path, self.headers.get("Host"), data))
        self._answer(b"stored %d" % len(data))


@pytest.fixture
def upstream() -> Iterator[str]:
    _Upstream.seen = []
    with serve_http(_Upstream, poll_interval=0.02) as url:
        yield url


def test_forwards_bytes_unchanged_host_included(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        assert client.get(proxy.url + "/a").content == BODY
        assert client.get(proxy.url + "/chunked").content == BODY
        assert client.head(proxy.url + "/a").headers["content-length"] == str(len(BODY))
        assert client.put(proxy.url + "/p", content=BODY).content == b"stored 102400"
        assert client.put(proxy.url + "/q", content=iter([BODY[:1000], BODY[1000:]])).content == b"stored 102400"
        # keep-alive: all of that on one connection, and the Host the client sent reached the server
        assert [s[2] for s in _Upstream.seen] == [proxy.netloc] * 5
        assert _Upstream.seen[-1][3] == BODY
    assert (proxy.requests, proxy.forwarded, proxy.total_injected, proxy.errors) == (5, 5, 0, [])


@pytest.mark.parametrize(("kind", "variant", "error"), [
    ("reset", "request", httpx.TransportError),
    ("reset", "response", httpx.TransportError),
    ("truncate", None, httpx.RemoteProtocolError),
])
def test_broken_answers_fail_the_request_and_are_counted(upstream, kind, variant, error):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.force(kind, method="GET", variant=variant)
        with pytest.raises(error):
            client.get(proxy.url + "/a")
        assert client.get(proxy.url + "/a").content == BODY  # the retry goes through
    assert proxy.injected[kind] == 1 and proxy.retried == 1
    # a reset before forwarding never reaches the server; one after it did (the answer was lost)
    assert len(_Upstream.seen) == (1 if variant == "request" else 2)


def test_truncated_chunked_body_is_an_error(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.force("truncate", path="/chunked")
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(proxy.url + "/chunked")
    assert proxy.variants["truncate:chunked"] == 1


def test_status_answers_503_before_and_500_after_forwarding(upstream):
    with FaultProxy(upstream) as proxy, httpx.Client() as client:
        proxy.force("status", method="PUT", variant="before")
        proxy.force("status", method="PUT", variant="after")
        first = client.put(proxy.url + "/p", content=b"x" * 5000)
        second = client.put(proxy.url + "/p", content=b"y" * 5000)
        third = client.put(proxy.url + "/p", content=b"z" * 5000)
    assert (first.status_code, second.status_code, third.status_code) == (503, 500, 200)
    assert b"SlowDown" in first.content and b"InternalError" in second.content
    # the 503 kept the upload from the server; the 500 came after the server stored it
    assert [s[3][:1] for s in _Upstream.seen] == [b"y", b"z"]
    assert proxy.variants == {"status:503-before": 1, "status:500-after": 1}


def test_slow_answers_arrive_late_but_whole(upstream):
    with FaultProxy(upstream, slow_delay=(0.3, 0.3)) as proxy, httpx.Client() as client:
        proxy.force("slow", count=2, method="GET")
        for _ in range(2):
            assert client.get(proxy.url + "/a").content == BODY
        proxy.force("slow", method="HEAD", variant="after")  # a body-less answer is delayed at its head
        assert client.head(proxy.url + "/a").status_code == 200
    assert proxy.injected["slow"] == 3 and proxy.variants.get("slow:head", 0) >= 1 and proxy.retried == 0


def test_rates_are_seeded_and_spare_is_never_faulted(upstream):
    def run(seed: int) -> list[tuple[str, str]]:
        with FaultProxy(upstream, seed=seed, spare=r"^/spared") as proxy:
            proxy.set_faults(status=0.5)
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port)
            for n in range(30):
                conn.request("GET", f"/spared/{n}" if n % 3 == 0 else f"/o/{n}")
                conn.getresponse().read()
            conn.close()
            return [(e.kind, e.path) for e in proxy.events]

    first = run(5)
    assert first == run(5) and first != run(6)
    assert first and not any(path.startswith("/spared") for _, path in first)


def test_unknown_fault_kinds_and_rates_above_one_are_refused():
    proxy = FaultProxy("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="unknown fault"):
        proxy.set_faults(timeout=0.1)
    with pytest.raises(ValueError, match="at most 1"):
        proxy.set_faults(reset=0.6, status=0.6)


# -- how the stores read these failures --------------------------------------------------------------------
def test_obstore_transport_failures_are_transient():
    from obstore.exceptions import GenericError

    from packager.stores.obstore_backend import translate_error

    for dump in ("kind: UnexpectedEof, error: IncompleteBody", 'code: 104, kind: ConnectionReset'):
        error = GenericError(f"Generic S3 error: HTTP error: request or response body error\n\nDebug source:\n{dump}")
        assert isinstance(translate_error(error, "s3://b/k"), TransientStoreError)
    assert not isinstance(translate_error(GenericError("Generic S3 error: bad request: InvalidArgument"), "s3://b/k"),
                          TransientStoreError)


def test_swift_broken_bodies_are_transient():
    from urllib3.exceptions import IncompleteRead, ProtocolError

    from packager.stores.swift import translate_swift_error

    broken = ProtocolError("Connection broken: IncompleteRead(1 bytes read, 1 more expected)",
                           IncompleteRead(1, 1))
    assert isinstance(translate_swift_error(broken, "swift://c/k"), TransientStoreError)
    assert isinstance(translate_swift_error(http.client.IncompleteRead(b"x", 3), "swift://c/k"), TransientStoreError)


def test_webdav_replays_only_what_can_be_replayed():
    from packager.stores.webdav import _conditional, _is_stream

    async def gen():
        yield b"x"

    assert _is_stream(gen()) and not _is_stream(b"x") and not _is_stream(None)
    assert _conditional({"If-None-Match": "*"}) and _conditional({"if-match": '"e"'}) and not _conditional({})
