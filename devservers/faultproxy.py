"""A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1, in front of one upstream server, for tests.

Clients talk to the proxy as if it were the server: every request is forwarded byte for byte, the
``Host`` header included, so what a client signed (S3 SigV4 signs ``Host``) or asked for (WebDAV
``Destination``) stays consistent with what the server sees, and URLs a server builds from ``Host``
(Swift TempAuth's storage URL) point back at the proxy. At a given rate per request it injects one of
these faults instead, each counted in :attr:`FaultProxy.injected`:

``reset``
    The connection is reset (RST): either while the request arrives (nothing reaches the server), or
    after the server answered, with part of the response sent (a lost response: the server did the work).
``status``
    ``503 SlowDown`` without forwarding (the common case: an overloaded front end), or, for idempotent
    methods, ``500 InternalError`` after the server executed the request.
``slow``
    The answer is delayed: its head comes late, or its body stalls half way. The request itself is
    forwarded at once, and nothing stalls once an answer is complete: a request held back (before
    forwarding, or unread on a keep-alive connection) until after its client timed out and retried
    would reach the server after the retry, a stale duplicate write landing after its own verification.
``truncate``
    The response head is forwarded with its full ``Content-Length`` (or chunked framing), the body is
    cut short and the connection closed cleanly (FIN). Applies only to responses with a body.

A fault that does not apply to a request (``truncate`` of a body-less answer) is not injected and not
counted. Decisions come from one seeded :class:`random.Random`, so a run's sequence of decisions is
reproducible (which request gets which decision depends on arrival order under concurrency).

The proxy runs its own event loop in a daemon thread, so it serves synchronous and asyncio clients alike::

    with FaultProxy("http://127.0.0.1:8333", seed=7) as proxy:
        proxy.set_faults(reset=0.03, truncate=0.03)
        ...  # point clients at proxy.url
        proxy.injected["reset"], proxy.requests

It frames HTTP/1.1 messages (``Content-Length``, ``chunked``, close-delimited responses, ``HEAD``/``204``/
``304`` without bodies, ``Expect: 100-continue`` answered by the proxy), keeps client connections alive
as the client asks and opens a fresh upstream connection per request (a reused one could have been
closed by the server while idle: a failure nobody injected). No TLS.

Beyond the rates: :meth:`FaultProxy.force` gives the next matching requests a chosen fault, ``spare`` (a
regex) exempts requests from faults, :attr:`FaultProxy.retried` counts requests that repeat one that had
a fault and failed (the retries seen on the wire), :attr:`FaultProxy.trace` records every request and
:attr:`FaultProxy.request_heads` their headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

FAULT_KINDS = ("reset", "status", "slow", "truncate")
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PROPFIND", "TRACE"})
_IO = 256 * 1024
_HEAD_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class FaultEvent:
    kind: str
    variant: str
    method: str
    path: str
    at: float = 0.0


class _Message:
    """A parsed request or response head; ``raw`` is what goes on the wire."""

    __slots__ = ("start", "headers", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        lines = raw.decode("latin-1").split("\r\n")
        self.start = lines[0]
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for key, value in self.headers if key == name for t in value.split(",")}

    def framing(self) -> tuple[str, int]:
        """('chunked', 0) | ('length', n) | ('none', 0): a request's body framing."""
        if "chunked" in self.tokens("transfer-encoding"):
            return "chunked", 0
        length = self.header("content-length")
        if length is not None and int(length) > 0:
            return "length", int(length)
        return "none", 0

    def without(self, name: str) -> bytes:
        """The raw head without header ``name``."""
        lines = self.raw.split(b"\r\n")
        keep = [lines[0]] + [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() != name.encode()]
        return b"\r\n".join(keep)


class _Abort(Exception):
    """The client connection is gone (or was reset on purpose): stop serving it."""


class FaultProxy:
    """See the module docstring. ``rates`` maps fault kind -> probability per request (sum <= 1)."""

    def __init__(self, upstream: str, *, seed: int = 0, rates: dict[str, float] | None = None,
                 slow_delay: tuple[float, float] = (0.2, 1.0), spare: str | None = None, name: str = "") -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream {upstream!r} must be http://host:port")
        self.upstream = (parts.hostname, parts.port or 80)
        self.name = name or f"{parts.hostname}:{parts.port}"
        self.slow_delay = slow_delay
        #: requests whose target matches this regex are never faulted (e.g. an object a test does not own)
        self.spare = re.compile(spare) if spare else None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.rates: dict[str, float] = {}
        self.set_faults(**(rates or {}))
        self.requests = 0
        self.forwarded = 0
        self.injected: Counter[str] = Counter()
        self.variants: Counter[str] = Counter()
        self.events: list[FaultEvent] = []
        self.methods: Counter[str] = Counter()
        self.errors: list[str] = []
        #: (time, method, target, status, client port): status 0 when a request arrives, then the upstream's
        self.trace: list[tuple[float, str, str, int, int]] = []
        #: (method, target, lower-cased header names and values) of every request, as the client sent them
        self.request_heads: list[tuple[str, str, dict[str, str]]] = []
        #: requests that repeat (same method and target) a request that got a fault and failed: the retries
        #: the proxy saw on the wire, whoever made them (the HTTP client, the store, the engine's row retry)
        self.retried = 0
        self._failed: set[tuple[str, str]] = set()
        self._forced: list[list] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port: int | None = None

    # -- control (any thread) -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the fault proxy is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_faults(self, **rates: float) -> None:
        """Set the rate of each fault kind (others 0): ``set_faults(reset=0.03, truncate=0.02)``."""
        unknown = set(rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {FAULT_KINDS}")
        if sum(rates.values()) > 1:
            raise ValueError("fault rates must add up to at most 1")
        with self._lock:
            self.rates = {k: float(rates.get(k, 0.0)) for k in FAULT_KINDS}

    @contextlib.contextmanager
    def paused(self):
        """No faults inside the block (e.g. while a test sets up or inspects through the proxy)."""
        with self._lock:
            saved, self.rates = self.rates, dict.fromkeys(FAULT_KINDS, 0.0)
        try:
            yield self
        finally:
            with self._lock:
                self.rates = saved

    def reseed(self, seed: int) -> None:
        """Start the sequence of decisions again from ``seed``."""
        with self._lock:
            self._rng.seed(seed)

    def force(self, kind: str, *, count: int = 1, method: str | None = None, path: str | None = None,
              variant: str | None = None) -> None:
        """Give the next ``count`` requests matching ``method`` and ``path`` (a regex searched in the
        request target) fault ``kind`` whatever the rates say; ``variant`` picks one ("request"/"response"
        for reset, "before"/"after" for status and slow)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        draw = {None: None, "request": 0.0, "before": 0.0, "response": 0.99, "after": 0.99}[variant]
        with self._lock:
            self._forced.append([kind, count, method, re.compile(path) if path else None, draw])

    def reset_counters(self) -> None:
        with self._lock:
            self.retried = 0
            self._failed.clear()
            self.requests = self.forwarded = 0
            self.injected.clear()
            self.variants.clear()
            self.events.clear()
            self.methods.clear()

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def stats(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "forwarded": self.forwarded, "injected": dict(self.injected),
                    "variants": dict(self.variants), "retried": self.retried, "methods": dict(self.methods)}

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT, backlog=256))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - bind failure
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=f"faultproxy-{self.name}")
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- decisions --------------------------------------------------------------------------------------
    def _decide(self, method: str, path: str) -> tuple[str | None, float, float]:
        """(fault kind or None, a uniform draw for the variant, a uniform draw for where/how long)."""
        with self._lock:
            self.requests += 1
            self.methods[method] += 1
            if (method, path) in self._failed:
                self._failed.discard((method, path))
                self.retried += 1
            draw = self._rng.random()
            variant, where = self._rng.random(), self._rng.random()
            if self.spare is not None and self.spare.search(path):
                return None, variant, where
            for forced in self._forced:
                kind, count, want_method, want_path, forced_variant = forced
                if count > 0 and (want_method is None or want_method == method) \
                        and (want_path is None or want_path.search(path)):
                    forced[1] -= 1
                    return kind, variant if forced_variant is None else forced_variant, where
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += self.rates[kind]
                if draw < acc:
                    return kind, variant, where
            return None, variant, where

    def _count(self, kind: str, variant: str, method: str, path: str) -> None:
        with self._lock:
            self.injected[kind] += 1
            self.variants[f"{kind}:{variant}"] += 1
            self.events.append(FaultEvent(kind, variant, method, path, time.time()))
            if kind != "slow":  # the request failed; a slow one only if the client gave up (see _one)
                self._failed.add((method, path))

    def _gave_up(self, method: str, path: str) -> None:
        with self._lock:
            self._failed.add((method, path))

    # -- serving ----------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        writer.transport.set_write_buffer_limits(high=_IO)
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                if not await self._one(_Message(head), reader, writer):
                    return
        except (_Abort, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            return  # shutting down (re-raising trips asyncio's stream callback on Python 3.11)
        except Exception as exc:  # noqa: BLE001 - keep serving other connections; tests look at .errors
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _one(self, request: _Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; returns whether to keep the client connection for another."""
        method, path = (request.start.split(" ") + ["", ""])[:2]
        kind, variant_draw, where = self._decide(method, path)
        conn = (writer.get_extra_info("peername") or ("", 0))[1]
        with self._lock:
            self.trace.append((time.time(), method, path, 0, conn))
            self.request_heads.append((method, path, dict(request.headers)))
        framing = request.framing()
        client_keep = "close" not in request.tokens("connection")
        raw_head = request.raw
        if "100-continue" in request.tokens("expect"):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            raw_head = request.without("expect")

        # -- faults decided before anything is forwarded ----------------------------------------------
        if kind == "reset" and variant_draw < 0.5:
            self._count("reset", "request", method, path)
            if framing[0] == "length" and framing[1] > 1:  # cut the upload half way
                await reader.readexactly(int(framing[1] * where))
            _reset(writer)
            raise _Abort
        if kind == "status" and (variant_draw < 0.75 or method not in IDEMPOTENT):
            await _relay_body(reader, framing, None)
            self._count("status", "503-before", method, path)
            writer.write(_error_response(503, "SlowDown", "Please reduce your request rate.", client_keep))
            await writer.drain()
            return client_keep
        slowed = kind == "slow"
        if kind == "slow":
            kind = "slow-head" if variant_draw < 0.5 else "slow-body"  # (see _forward: a body-less answer is
            # always slowed at its head)

        # -- forward, on a fresh upstream connection (a reused one may have been closed by the server
        #    while idle, which would look like a fault nobody injected) ----------------------------------
        up_reader, up_writer = await asyncio.open_connection(*self.upstream, limit=_HEAD_LIMIT)
        try:
            up_writer.transport.set_write_buffer_limits(high=_IO)
            return await self._forward(raw_head, framing, kind, where, method, path, client_keep, reader, writer,
                                       up_reader, up_writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            if slowed:  # the client timed out and went away while we dawdled
                self._gave_up(method, path)
            raise
        finally:
            up_writer.transport.abort()

    async def _forward(self, raw_head: bytes, framing: tuple[str, int], kind: str | None, where: float, method: str,
                       path: str, client_keep: bool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        up_writer.write(raw_head)
        await _relay_body(reader, framing, up_writer)
        await up_writer.drain()
        with self._lock:
            self.forwarded += 1
        while True:
            response_head = await _read_head(up_reader)
            if response_head is None:
                raise ConnectionError("upstream closed the connection before answering")
            response = _Message(response_head)
            status = int(response.start.split(" ")[1])
            if not 100 <= status < 200 or status == 101:
                break  # (an interim answer: the client was already told to go on, or did not ask)
        body = _response_framing(method, status, response)
        keep = client_keep and body[0] != "close" and "close" not in response.tokens("connection")
        with self._lock:
            self.trace.append((time.time(), method, path, status, (writer.get_extra_info("peername") or ("", 0))[1]))

        if kind == "status":  # idempotent: the server did it, the client hears 500
            await _relay_body(up_reader, body, None)
            self._count("status", "500-after", method, path)
            writer.write(_error_response(500, "InternalError", "We encountered an internal error. Please try "
                                         "again.", client_keep))
            await writer.drain()
            return client_keep
        if kind == "reset":  # the server did it; the answer is lost (a body: part way through)
            self._count("reset", "response", method, path)
            if body[0] == "length" and body[1] > 1:
                writer.write(response.raw)
                await _relay_body(up_reader, ("length", int(body[1] * where)), writer)
            elif body[0] == "chunked":
                writer.write(response.raw)
                await _relay_raw_prefix(up_reader, writer, where)
            await _drain_quietly(writer)
            _reset(writer)
            raise _Abort
        if kind == "truncate" and body[0] in ("length", "chunked") and (body[0] == "chunked" or body[1] > 1):
            self._count("truncate", body[0], method, path)
            writer.write(response.raw)
            if body[0] == "length":
                await _relay_body(up_reader, ("length", int(body[1] * where)), writer)
            else:
                await _relay_raw_prefix(up_reader, writer, where)
            await _drain_quietly(writer)
            writer.close()  # FIN: a clean close, short of the promised length
            raise _Abort
        if kind == "slow-body" and not (body[0] == "chunked" or (body[0] == "length" and body[1] > 1)):
            # Never stall after an answer is complete: the client would send its next request on this
            # connection and we would hold it unread; when it timed out and was retried elsewhere, it would
            # reach the server after the retry, a stale duplicate (a write landing after its own verification).
            kind = "slow-head"
        if kind == "slow-head":  # the server did it, its answer comes late (a client may give up waiting)
            self._count("slow", "head", method, path)
            await asyncio.sleep(self._delay(where))
        writer.write(response.raw)
        if kind == "slow-body":  # stall half way through the answer
            self._count("slow", "body", method, path)
            if body[0] == "length":
                half = body[1] // 2
                await _relay_body(up_reader, ("length", half), writer)
                await writer.drain()
                await asyncio.sleep(self._delay(where))
                await _relay_body(up_reader, ("length", body[1] - half), writer)
            else:  # chunked: stall before the first chunk
                await writer.drain()
                await asyncio.sleep(self._delay(where))
                await _relay_body(up_reader, body, writer)
        else:
            await _relay_body(up_reader, body, writer)
        await writer.drain()
        return keep

    def _delay(self, where: float) -> float:
        low, high = self.slow_delay
        return low + (high - low) * where


# -- framing helpers --------------------------------------------------------------------------------------
async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """A message head up to and including the blank line; None at a clean EOF between messages."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise


def _response_framing(method: str, status: int, response: _Message) -> tuple[str, int]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0
    if "chunked" in response.tokens("transfer-encoding"):
        return "chunked", 0
    length = response.header("content-length")
    if length is not None:
        return ("length", int(length)) if int(length) > 0 else ("none", 0)
    return "close", 0


async def _relay_body(reader: asyncio.StreamReader, framing: tuple[str, int],
                      writer: asyncio.StreamWriter | None) -> None:
    """Copy one body, framed as ``framing``, from ``reader`` to ``writer`` (None: read and drop it)."""
    kind, length = framing
    if kind == "length":
        left = length
        while left:
            data = await reader.read(min(left, _IO))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            if writer is not None:
                writer.write(data)
                await writer.drain()
    elif kind == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            if writer is not None:
                writer.write(line)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = await reader.readuntil(b"\r\n")
                    if writer is not None:
                        writer.write(trailer)
                    if trailer == b"\r\n":
                        break
                break
            await _relay_body(reader, ("length", size + 2), writer)
        if writer is not None:
            await writer.drain()
    elif kind == "close":
        while data := await reader.read(_IO):
            if writer is not None:
                writer.write(data)
                await writer.drain()


async def _relay_raw_prefix(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: float) -> None:
    """Part of a chunked body: the first chunk line and a share of what follows, cut mid-stream."""
    line = await reader.readuntil(b"\r\n")
    writer.write(line)
    size = int(line.split(b";", 1)[0].strip(), 16)
    if size:
        await _relay_body(reader, ("length", max(0, int(size * where))), writer)


async def _drain_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        writer.transport.set_write_buffer_limits(high=0)
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN: the client sees 'connection reset by peer'."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _error_response(status: int, code: str, message: str, keep: bool) -> bytes:
    reason = {500: "Internal Server Error", 503: "Service Unavailable"}[status]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource></Resource><RequestId>faultproxy</RequestId></Error>").encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"Retry-After: 0\r\n" + ("" if keep else "Connection: close\r\n") + "\r\n")
    return head.encode() + body
