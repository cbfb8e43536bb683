"""Process helpers shared by the dev servers: free ports, readiness polling, start and stop by PID.

Why these exist instead of plain ``subprocess.Popen``:

* Servers are started in their own session (``start_new_session=True``) so a Ctrl-C in the terminal
  does not reach them half-way through a test; the fixture that started a server stops it itself.
* The parent may run with signals ignored or blocked (CI runners, ``nohup``, threads): ignored
  dispositions survive ``exec``, and a server that ignores SIGTERM could only be SIGKILLed, losing
  its clean shutdown. ``_child_setup`` restores the default handlers and unblocks every signal.
* ``PR_SET_PDEATHSIG`` makes the kernel send SIGTERM to a server whose parent (the test run) dies
  without running its teardown (``kill -9`` of pytest), so nothing is left behind on a CI machine.
* Processes are only ever stopped by their own PID, never by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("devservers")


class DevServerError(RuntimeError):
    """A dev server could not be set up or started; the message says what to fix."""


_PR_SET_PDEATHSIG = 1
_RESET_SIGNALS = (
    "SIGTERM",
    "SIGINT",
    "SIGHUP",
    "SIGQUIT",
    "SIGPIPE",
    "SIGXFSZ",
    "SIGCHLD",
    "SIGUSR1",
    "SIGUSR2",
)


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel's choice), not in ``avoid``.

    There is an unavoidable race until the server binds it; servers that fail to bind say so and the
    caller's error message suggests a retry.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (see :func:`free_port`)."""
    ports: list[int] = []
    for _ in range(n):
        ports.append(free_port(ports))
    return ports


def _child_setup(pdeathsig: bool) -> None:
    """Runs in the child between fork and exec: default signal handling, optional parent-death signal."""
    for name in _RESET_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if pdeathsig:
        # not Linux (no prctl): the teardown still stops the process
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def start(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    pdeathsig: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a long-running server with stdout+stderr appended to ``log_path``.

    ``pdeathsig`` must be False for a process that is meant to outlive the calling thread.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(pdeathsig),
        )
    log.debug("started pid %d: %s", proc.pid, " ".join(map(str, cmd)))
    return proc


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    what: str | None = None,
) -> None:
    """Run a setup command to completion; on failure raise with the tail of its output.

    ``pdeathsig`` is off: ``pg_ctl start`` leaves a daemon behind on purpose, and that daemon is
    stopped through ``pg_ctl stop`` instead.
    """
    args = [str(c) for c in cmd]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n$ {' '.join(args)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                timeout=timeout,
                start_new_session=True,  # daemons it leaves (postgres) must not get the terminal's Ctrl-C
                preexec_fn=lambda: _child_setup(False),
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
    if rc != 0:
        status = f"timed out after {timeout:.0f} s" if rc is None else f"exited with {rc}"
        raise DevServerError(f"{what or args[0]} {status}: {' '.join(args)}\n{tail(log_path)}")


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages (empty if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    last = text.splitlines()[-lines:]
    return f"--- last {len(last)} lines of {path} ---\n" + "\n".join(last)


def wait_http(
    url: str,
    *,
    timeout: float = 30,
    proc: subprocess.Popen[bytes] | None = None,
    ok: Collection[int] = (200,),
    log_path: Path | None = None,
) -> None:
    """Poll ``url`` until it answers with a status in ``ok``.

    Fails fast if ``proc`` exits meanwhile (usually: its port was taken, or a bad flag), with the
    tail of ``log_path`` in the message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if proc is not None and proc.poll() is not None:
            detail = tail(log_path) if log_path else ""
            raise DevServerError(
                f"server pid {proc.pid} exited with {proc.returncode} before {url} answered "
                f"(port taken? see its log)\n{detail}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status in ok:
                    return
                last = r.status
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return
            last = e.code
        except OSError as e:
            last = e
        if time.monotonic() > deadline:
            detail = tail(log_path) if log_path else ""
            raise TimeoutError(f"{url} not ready after {timeout:.0f} s (last answer: {last})\n{detail}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], *, timeout: float = 10, what: str = "process") -> float:
    """SIGTERM ``proc`` (its PID only), SIGKILL it after ``timeout`` s; return the seconds it took."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s pid %d ignored SIGTERM for %.0f s: SIGKILL", what, proc.pid, timeout)
            proc.kill()
            proc.wait(10)
    return time.monotonic() - t0


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 10) -> bool:
    """Send ``sig`` to ``pid`` (not our child, so it cannot be waited for) and poll until it is gone.

    Returns True when the process is gone. SIGKILL is sent if it is still there after ``timeout``.
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
            return not pid_alive(pid)
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler], *, poll_interval: float = 0.5) -> Iterator[str]:
    """Serve ``handler`` from a threading HTTP server on a free 127.0.0.1 port; yields its base URL.

    For the small in-process servers of tests (scripted proxies, fake upstreams); stopped and closed on exit.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
