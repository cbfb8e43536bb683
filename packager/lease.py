"""Leases: one run at a time writes into a package or a relocation target.

Two runs writing the same package (``items.parquet``, ``assets.lock.parquet``, ``relocated/...``) or
relocating into the same target prefix would interleave: one run's relocated lock published beside the
other's items, one run deleting a destination object (a failed verification) that the other has just
locked, one run's start-up clean-up aborting the other's multipart uploads. A lease makes the second
run stop before it writes anything, with a message naming the holder.

The lease is one small JSON object, ``<prefix>/.stac-packager.lease``, holding the owner (a random id,
host, pid and the pid's start time), the command, and when it was acquired, renewed and expires. It is
written with the store's own atomic primitive, so two runs starting at the same instant cannot both win:

=========================== ======================================= ================================================
store                       acquire (create if absent)              take over / renew (compare and swap)
=========================== ======================================= ================================================
S3, GCS, Azure (obstore)    PUT ``If-None-Match: *`` (mode=create)  PUT ``If-Match: <etag>`` (mode=update)
local files                 ``flock(LOCK_EX)`` on the lease file     none needed: the kernel drops a dead process's lock
OpenStack Swift             PUT ``If-None-Match: *`` + X-Delete-At  DELETE ``X-If-Delete-At`` then create; renew: POST
WebDAV                      PUT ``If-None-Match: *``                 PUT ``If-Match: <etag>`` (checked by the server)
=========================== ======================================= ================================================

* A holder renews its lease every ``ttl / 3`` seconds from a background thread. A run that dies stops
  renewing; its lease **expires** ``ttl`` seconds after the last renewal (plus a clock-skew grace) and the
  next run takes it over with a compare-and-swap, so two successors cannot both take it. On Swift the
  object carries ``X-Delete-At``, so the server itself stops serving an expired lease.
* A holder on **this host** whose pid is gone (or was reused: the start time differs) is dead now; its
  lease is taken over at once, without waiting for the expiry (a crashed run re-run on the same machine).
* ``break_lease=True`` (``--break-lease``) takes over a lease whatever its state: for a holder known to be
  dead on another machine. A live holder then finds its lease lost and stops before it publishes.
* Fencing: a holder that could not renew (or finds another owner in the object) marks its lease
  **lost**; relocation stops, and :func:`check_fences` (called by :func:`packager.publish.publish` for every
  package file) refuses to publish under a lost lease.
* Leases are re-entrant within a process: the package lease and the target lease of a relocation into
  the package root are one lease.

``STAC_PACKAGER_LEASE_TTL`` (seconds) overrides the default ttl of 120 s; ``STAC_PACKAGER_LEASES=off``
disables leases (for stores without conditional writes, e.g. Swift's s3api, which answers 501 to If-Match).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from packager.errors import ObjectNotFound, PackagerError, StoreError
from packager.locations import Location
from packager.retry import with_retries
from packager.stores import StoreRegistry

T = TypeVar("T")

LEASE_NAME = ".stac-packager.lease"
TTL_ENV = "STAC_PACKAGER_LEASE_TTL"
SWITCH_ENV = "STAC_PACKAGER_LEASES"
DEFAULT_TTL = 120.0
#: seconds added to a lease's expiry before another host's run may take it over (clocks differ)
MAX_CLOCK_SKEW = 5.0


class LeaseHeld(PackagerError):
    """Another run holds the lease; the message names it and says how to proceed."""

    code = "lease_held"

    def __init__(self, message: str, holder: LeaseInfo | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLost(PackagerError):
    """This run's lease expired or was taken over while it worked: it must not publish."""

    code = "lease_lost"


class LeaseUnsupported(StoreError):
    """The store cannot do the conditional writes a lease needs."""


class _Exists(Exception):
    pass


class _Conflict(Exception):
    pass


def default_ttl() -> float:
    raw = os.environ.get(TTL_ENV, "").strip()
    try:
        return max(1.0, float(raw)) if raw else DEFAULT_TTL
    except ValueError:
        return DEFAULT_TTL


def leases_enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def grace_for(ttl: float) -> float:
    return min(MAX_CLOCK_SKEW, ttl / 2)


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _iso(epoch: float | None) -> str:
    if not epoch:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class LeaseInfo:
    """What the lease object holds."""

    owner: str
    host: str
    pid: int
    command: str
    acquired_at: float
    renewed_at: float
    expires_at: float
    ttl: float
    pid_start: str | None = None
    boot_id: str | None = None
    tool: str = "stac-packager"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseInfo | None:
        try:
            raw = json.loads(data)
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            return cls(**known)
        except (ValueError, TypeError, KeyError):
            return None

    def dead_here(self) -> bool:
        """Whether the holder ran on this machine (same host and boot) and its process is gone."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        if self.boot_id and _boot_id() and self.boot_id != _boot_id():
            return True  # the machine rebooted since
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # exists, another user's
        return bool(self.pid_start) and _proc_start(self.pid) not in (None, self.pid_start)

    def describe(self, now: float | None = None, expires_at: float | None = None, *, kernel_lock: bool = False) -> str:
        now = time.time() if now is None else now
        who = f"owner {self.owner[:12]} ({self.command}), pid {self.pid} on host {self.host}, since {_iso(self.acquired_at)}"
        if kernel_lock:
            return f"{who}; a file lock the system releases when that process ends"
        expires = self.expires_at if expires_at is None else expires_at
        left = expires - now
        state = f"expires {_iso(expires)} (in {left:.0f} s)" if left > 0 else f"expired {_iso(expires)}"
        return f"{who}, last renewed {max(0.0, now - self.renewed_at):.0f} s ago, {state}"


# -- backends -----------------------------------------------------------------------------------------
@dataclass
class _Read:
    body: bytes
    version: str
    last_modified: datetime | None = None
    #: when the server stops serving the object (Swift X-Delete-At); it outlives the body's expiry
    server_deadline: float | None = None


class _ObstoreBackend:
    """S3, GCS, Azure: conditional PUT (If-None-Match: * / If-Match: etag), as object_store implements it."""

    def __init__(self, store: Any, key: str, href: str) -> None:
        self._store, self.key, self.href = store, key, href

    def _translate(self, exc: BaseException) -> BaseException:
        from obstore.exceptions import AlreadyExistsError, NotFoundError, NotSupportedError, PreconditionError

        from packager.stores.obstore_backend import translate_error

        if isinstance(exc, AlreadyExistsError):
            return _Exists()
        if isinstance(exc, (PreconditionError, NotFoundError)):
            return _Conflict()
        text = str(exc)
        if isinstance(exc, NotSupportedError) or "501" in text or "NotImplemented" in text:
            return LeaseUnsupported(
                f"{self.href}: this store does not support conditional writes (If-None-Match / If-Match), which "
                f"leases need; set {SWITCH_ENV}=off to run without a lease (then make sure no two runs write "
                "the same package or target at once)", href=self.href)
        return translate_error(exc, self.href)

    async def read(self) -> _Read | None:
        import obstore

        try:
            result = await obstore.get_async(self._store, self.key)
            body = bytes(await result.bytes_async())
        except Exception as exc:
            error = self._translate(exc)
            if isinstance(error, (_Conflict, ObjectNotFound)):
                return None
            raise error from None
        meta = result.meta
        return _Read(body, meta.get("e_tag") or "", meta.get("last_modified"))

    async def _put(self, body: bytes, mode: Any) -> str:
        import obstore

        try:
            result = await obstore.put_async(self._store, self.key, body, mode=mode, use_multipart=False)
        except Exception as exc:
            raise self._translate(exc) from None
        return result.get("e_tag") or ""

    async def create(self, body: bytes) -> str:
        return await self._put(body, "create")

    async def replace(self, body: bytes, version: str) -> str:
        try:
            return await self._put(body, {"e_tag": version})
        except _Exists:
            raise _Conflict() from None

    renew = replace

    async def delete(self) -> None:
        import obstore

        with contextlib.suppress(Exception):
            await obstore.delete_async(self._store, self.key)


class _SwiftBackend:
    """Swift: PUT If-None-Match: * (an object past its X-Delete-At counts as absent), conditional DELETE."""

    def __init__(self, store: Any, key: str, href: str) -> None:
        self._store, self.key, self.href = store, key, href

    @staticmethod
    def _delete_at(body: bytes) -> int:
        """X-Delete-At: the expiry plus the skew grace, rounded up (a lease is never cut short)."""
        info = LeaseInfo.from_bytes(body)
        ttl = info.ttl if info else DEFAULT_TTL
        return int((info.expires_at if info else time.time() + DEFAULT_TTL) + grace_for(ttl)) + 1

    async def _op(self, op: Any, *, write: bool = False) -> Any:
        return await self._store._run(op, self.href, write=write)  # noqa: SLF001 - the store's worker pools

    async def read(self) -> _Read | None:
        from packager.stores.base import parse_http_date

        try:
            headers, body = await self._op(lambda c: c.get_object(self._store.container, self.key))
        except ObjectNotFound:
            return None
        delete_at = headers.get("x-delete-at")
        return _Read(body, delete_at or headers.get("etag", ""), parse_http_date(headers.get("last-modified")),
                     server_deadline=float(delete_at) if delete_at and delete_at.isdigit() else None)

    async def create(self, body: bytes) -> str:
        from swiftclient.exceptions import ClientException

        delete_at = str(self._delete_at(body))

        def op(conn: Any) -> bool:
            try:
                conn.put_object(self._store.container, self.key, body, content_type="application/json",
                                headers={"If-None-Match": "*", "X-Delete-At": delete_at})
                return True
            except ClientException as exc:
                if exc.http_status == 412:
                    return False
                raise

        if not await self._op(op, write=True):
            raise _Exists()
        return delete_at

    async def replace(self, body: bytes, version: str) -> str:
        from swiftclient.exceptions import ClientException

        def op(conn: Any) -> bool:
            try:
                conn.delete_object(self._store.container, self.key, headers={"X-If-Delete-At": version})
                return True
            except ClientException as exc:
                if exc.http_status in (404, 409, 412, 400):
                    return False
                raise

        if version.isdigit() and not await self._op(op, write=True):
            raise _Conflict()
        try:
            return await self.create(body)
        except _Exists:
            raise _Conflict() from None

    async def renew(self, body: bytes, version: str) -> str:
        """POST a later X-Delete-At (metadata only; a POST keeps the body), then check it is still ours."""
        delete_at = str(max(self._delete_at(body), int(version) + 1 if version.isdigit() else 0))
        try:
            await self._op(lambda c: c.post_object(self._store.container, self.key,
                                                   headers={"X-Delete-At": delete_at}), write=True)
        except ObjectNotFound:
            raise _Conflict() from None
        return delete_at

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            await self._store.delete(self.key)


class _WebDavBackend:
    """WebDAV: PUT If-None-Match: * / If-Match: etag, straight to the lease name (a few hundred bytes)."""

    def __init__(self, store: Any, key: str, href: str) -> None:
        self._store, self.key, self.href = store, key, href

    async def read(self) -> _Read | None:
        from packager.stores.base import parse_http_date

        try:
            response = await self._store._request("GET", self.key, ok=(200,), what="GET lease")  # noqa: SLF001
        except ObjectNotFound:
            return None
        return _Read(response.content, response.headers.get("etag", ""),
                     parse_http_date(response.headers.get("last-modified")))

    async def _put(self, body: bytes, headers: dict[str, str], failed: type[Exception]) -> str:
        await self._store._ensure_parents(self.key)  # noqa: SLF001
        try:
            await self._store._request("PUT", self.key, ok=(200, 201, 204), what="PUT lease", content=body,  # noqa: SLF001
                                       headers={**headers, "Content-Type": "application/json"})
        except StoreError as exc:
            if "HTTP 412" in str(exc) or (failed is _Conflict and "HTTP 404" in str(exc)):
                raise failed() from None
            raise
        read = await self.read()
        return read.version if read else ""

    async def create(self, body: bytes) -> str:
        return await self._put(body, {"If-None-Match": "*"}, _Exists)

    async def replace(self, body: bytes, version: str) -> str:
        return await self._put(body, {"If-Match": version}, _Conflict)

    renew = replace

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            await self._store.delete(self.key)


def _backend_for(location: Location, registry: StoreRegistry) -> Any:
    store = registry.store_for(location)
    inner = getattr(store, "_inner", store)  # a keystore-guarded store: the capability was checked already
    kind = location.kind
    if kind == "swift":
        return _SwiftBackend(inner, location.key, location.href())
    if kind.startswith("webdav+"):
        return _WebDavBackend(inner, location.key, location.href())
    raw = getattr(inner, "_store", None)
    if raw is None:
        raise LeaseUnsupported(f"{location.href()}: no lease support for this store", href=location.href())
    return _ObstoreBackend(raw, location.key, location.href())


# -- the lease --------------------------------------------------------------------------------------------
class _Loop:
    """A private event loop in a daemon thread: lease I/O never needs (or disturbs) the caller's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="stac-packager-lease")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        with contextlib.suppress(Exception):
            self.loop.close()


@dataclass
class Lease:
    """A held lease (see the module docstring). Use :func:`hold`."""

    location: Location
    info: LeaseInfo
    #: the server's time of acquisition (the lease object's Last-Modified), for clean-up cut-offs
    server_acquired_at: datetime | None = None
    took_over: LeaseInfo | None = None
    lost: str | None = None
    _backend: Any = None
    _version: str = ""
    _loop: _Loop | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _file: Any = None
    _refs: int = 1
    renewals: int = 0

    @property
    def href(self) -> str:
        return self.location.href()

    @property
    def scope(self) -> Location:
        """The prefix this lease covers: the lease object's folder."""
        key = self.location.key.rsplit("/", 1)[0] if "/" in self.location.key else ""
        return Location(self.location.kind, self.location.container, key, self.location.endpoint)

    def covers(self, location: Location) -> bool:
        scope = self.scope
        if location.store_identity() != scope.store_identity():
            return False
        base = scope.key.strip("/")
        key = location.key.strip("/")
        return not base or key == base or key.startswith(base + "/")

    # -- checks ---------------------------------------------------------------------------------------
    def check(self, *, fresh: bool = False) -> None:
        """Raise :class:`LeaseLost` if the lease was lost; ``fresh`` reads the lease object again first."""
        if self.lost is None and fresh and self._backend is not None and self._loop is not None:
            try:
                read = self._loop.run(self._backend.read(), timeout=60)
            except StoreError:
                read = None if time.time() > self.info.expires_at else _Read(self.info.to_bytes(), self._version)
            holder = LeaseInfo.from_bytes(read.body) if read else None
            if holder is None or holder.owner != self.info.owner:
                self.lost = (f"the lease object now belongs to {holder.describe()}" if holder
                             else "the lease object is gone")
        if self.lost is None and self._file is None and time.time() > self.info.expires_at:
            self.lost = f"it expired at {_iso(self.info.expires_at)} without a successful renewal"
        if self.lost is not None:
            raise LeaseLost(f"{self.href}: this run's lease was lost ({self.lost}); another run may be writing "
                            "here, so this run stopped before publishing. Run it again when the other is done.")

    # -- renewal --------------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._file is not None:
            return  # a kernel lock needs no renewal
        self._thread = threading.Thread(target=self._heartbeat, daemon=True, name="stac-packager-lease-renew")
        self._thread.start()

    def _heartbeat(self) -> None:
        interval = max(0.2, self.info.ttl / 3)
        while not self._stop.wait(interval):
            if self.lost is not None:
                return
            now = time.time()
            renewed = LeaseInfo(**{**asdict(self.info), "renewed_at": now, "expires_at": now + self.info.ttl})
            try:
                self._version = self._loop.run(self._backend.renew(renewed.to_bytes(), self._version),
                                               timeout=max(5.0, self.info.ttl))
                self.info = renewed
                self.renewals += 1
            except _Conflict:
                self.lost = "another run took it over"
                return
            except Exception:  # noqa: BLE001 - a store hiccup: try again next beat, until the lease expires
                if time.time() > self.info.expires_at:
                    self.lost = "it could not be renewed before it expired"
                    return

    def release(self) -> None:
        self._refs -= 1
        if self._refs > 0:
            return
        with _HELD_LOCK:
            _HELD.pop(self.href, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(5.0, self.info.ttl))
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.location.key)
            self._file.close()  # drops the flock
            self._file = None
            return
        try:
            if self.lost is None and self._loop is not None:
                read = self._loop.run(self._backend.read(), timeout=60)
                holder = LeaseInfo.from_bytes(read.body) if read else None
                if holder is not None and holder.owner == self.info.owner:
                    self._loop.run(self._backend.delete(), timeout=60)
        except Exception:  # noqa: BLE001 - an undeleted lease expires by itself
            pass
        finally:
            if self._loop is not None:
                self._loop.close()
                self._loop = None


#: leases this process holds, by href (re-entrant)
_HELD: dict[str, Lease] = {}
_HELD_LOCK = threading.Lock()


def held_leases() -> list[Lease]:
    with _HELD_LOCK:
        return list(_HELD.values())


def check_fences(location: Location) -> None:
    """Before writing ``location``: every lease this process holds over it must still be ours."""
    for lease in held_leases():
        if lease.covers(location):
            lease.check(fresh=True)


def lease_location(prefix: Location) -> Location:
    return prefix.child(LEASE_NAME)


def acquire(prefix: Location, registry: StoreRegistry, *, command: str, ttl: float | None = None,
            break_lease: bool = False, wait: float = 0.0) -> Lease | None:
    """Take the lease of ``prefix`` (a package root or relocation target), or raise :class:`LeaseHeld`.

    ``None`` when leases are off, or for read-only kinds (http). ``wait`` seconds: poll a held lease
    until it is free or taken over (default: fail at once).
    """
    if not leases_enabled() or prefix.kind in ("http", "https"):
        return None
    location = lease_location(prefix)
    with _HELD_LOCK:
        existing = _HELD.get(location.href())
        if existing is not None:
            existing._refs += 1
            return existing
    ttl = default_ttl() if ttl is None else max(1.0, float(ttl))
    now = time.time()
    info = LeaseInfo(owner=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid(), command=command,
                     acquired_at=now, renewed_at=now, expires_at=now + ttl, ttl=ttl,
                     pid_start=_proc_start(os.getpid()), boot_id=_boot_id())
    if location.kind == "file":
        lease = _acquire_file(location, info, wait)
    else:
        lease = _acquire_object(location, registry, info, break_lease, wait)
    with _HELD_LOCK:
        _HELD[location.href()] = lease
    lease._start_heartbeat()
    return lease


@contextlib.contextmanager
def hold(prefix: Location, registry: StoreRegistry, *, command: str, ttl: float | None = None,
         break_lease: bool = False, wait: float = 0.0) -> Iterator[Lease | None]:
    """``with hold(root, registry, command="relocate"):`` the lease of ``root`` for the block."""
    lease = acquire(prefix, registry, command=command, ttl=ttl, break_lease=break_lease, wait=wait)
    try:
        yield lease
    finally:
        if lease is not None:
            lease.release()


def _held_message(href: str, holder: LeaseInfo | None, expires_at: float | None, *, local: bool = False) -> str:
    if local:
        who = holder.describe(kernel_lock=True) if holder else "a process that has not written its name yet"
        return f"{href}: another stac-packager run is writing here ({who}). Wait for it to finish, or stop it."
    who = holder.describe(expires_at=expires_at) if holder else "an unreadable lease object"
    return (f"{href}: another stac-packager run is writing here ({who}). Wait for it to finish (a crashed "
            "run's lease expires by itself, and one that ran on this machine is taken over at once), or, if "
            "you are sure that run is dead, run again with --break-lease.")


def _acquire_file(location: Location, info: LeaseInfo, wait: float) -> Lease:
    """A kernel lock (flock) on the lease file: released by the kernel when the holder dies."""
    path = Path(location.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        handle = open(path, "a+b")  # noqa: SIM115 - kept open while the lease is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            try:
                holder = LeaseInfo.from_bytes(path.read_bytes())
            except OSError:
                holder = None
            raise LeaseHeld(_held_message(location.href(), holder, None, local=True), holder) from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder unlinked it between our open and our lock: take the new file
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(info.to_bytes())
        handle.flush()
        return Lease(location, info, server_acquired_at=datetime.now(UTC), _file=handle)


def _run_retrying(loop: _Loop, request: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """One lease request, tried again on a transient store error (a reset, a 503, an answer cut short).

    Trying again is safe for every lease request: a create whose answer was lost meets its own object
    (412), which the caller recognises as ours by the owner id; a replace whose delete went through meets
    a conflict and looks again; reads and renewals are idempotent.
    """
    value, _ = loop.run(with_retries(request), timeout=300)
    return value


def _acquire_object(location: Location, registry: StoreRegistry, info: LeaseInfo, break_lease: bool,
                    wait: float) -> Lease:
    backend = _backend_for(location, registry)
    loop = _Loop()
    deadline = time.monotonic() + wait
    took_over: LeaseInfo | None = None
    try:
        for _ in range(1000):
            body = info.to_bytes()
            try:
                version = _run_retrying(loop, partial(backend.create, body))
            except _Exists:
                current = _run_retrying(loop, backend.read)
                if current is None:
                    continue  # released meanwhile: try to create again
                holder = LeaseInfo.from_bytes(current.body)
                ours = holder is not None and holder.owner == info.owner
                if ours:  # our own create went through but its answer was lost, and the retry met our object
                    version = current.version
                else:
                    grace = grace_for(holder.ttl) if holder else 0.0
                    expires = holder.expires_at if holder else 0.0
                    if current.server_deadline is not None:  # renewed by POST: the header is the truth
                        expires = max(expires, current.server_deadline - 1 - grace)
                    stale = holder is None or time.time() > expires + grace or holder.dead_here()
                    if not (stale or break_lease):
                        if time.monotonic() < deadline:
                            time.sleep(min(1.0, max(0.2, info.ttl / 10)))
                            continue
                        raise LeaseHeld(_held_message(location.href(), holder, expires), holder) from None
                    try:
                        version = _run_retrying(loop, partial(backend.replace, body, current.version))
                    except _Conflict:
                        continue  # another successor was faster, or the holder renewed: look again
                    took_over = holder
            # renew once now: a store without compare-and-swap (e.g. 501 to If-Match) fails here, at the
            # start, rather than at the first heartbeat half-way through the run
            try:
                version = _run_retrying(loop, partial(backend.renew, body, version))
            except _Conflict:
                continue
            # confirm: the object now names us (catches servers whose conditionals are not atomic)
            confirmed = _run_retrying(loop, backend.read)
            mine = LeaseInfo.from_bytes(confirmed.body) if confirmed else None
            if mine is None or mine.owner != info.owner:
                if time.monotonic() < deadline:
                    continue
                raise LeaseHeld(_held_message(location.href(), mine, None), mine)
            lease = Lease(location, info, server_acquired_at=confirmed.last_modified, took_over=took_over,
                          _backend=backend, _version=confirmed.version or version, _loop=loop)
            return lease
        raise LeaseHeld(f"{location.href()}: could not acquire the lease (too much contention)")
    except BaseException:
        loop.close()
        raise
