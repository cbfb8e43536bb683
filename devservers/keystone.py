"""A real OpenStack Keystone (identity v3) on 127.0.0.1, for the Swift Keystone-auth tests.

Keystone (PyPI ``keystone``) and its ~95 OpenStack dependencies live in their own venv, built by
``scripts/keystone-venv.sh`` at ``.cache/keystone-venv`` (or wherever ``$KEYSTONE_VENV`` points); it is
only ever run as a subprocess. :func:`keystone` sets one up in a work directory and serves it:

* ``keystone.conf`` with a sqlite database, fernet tokens, an in-process cache (without it a token
  validation takes ~450 SQL queries), cheap password hashes (bcrypt's minimum rounds: test data only);
* ``db_sync``, ``fernet_setup``, ``credential_setup`` and ``bootstrap`` (admin user, project ``admin``,
  roles ``reader``/``member``/``manager``/``admin``/``service``, region and identity endpoints), run in
  **one** Python process: each ``keystone-manage`` call alone spends ~6 s importing;
* gunicorn (one worker, threads) serving ``keystone.server.wsgi.initialize_public_application`` through
  a two-line wrapper that hides gunicorn's argv from oslo.config (which would parse it as its own and
  exit). ``--preload`` makes a broken app fail the master at once instead of respawning workers, and
  ``--no-control-socket`` stops gunicorn >= 25 from binding a socket under ``~/.gunicorn`` that two
  instances would share.

The :class:`KeystoneServer` it yields talks to the identity API with the standard library only (system-
scoped admin token), to create projects, users, role grants, catalog endpoints, and to revoke tokens.
:func:`provision_swift` makes what a Keystone-fronted Swift proxy and its users need.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devservers import process
from devservers.process import DevServerError

log = logging.getLogger("devservers")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".cache" / "keystone-venv"
BUILD_HINT = ("build it with `bash scripts/keystone-venv.sh` (or point KEYSTONE_VENV at a venv with keystone + "
              "gunicorn)")
REGION = "RegionOne"
STOP_TIMEOUT = 10.0

# keystone-manage's steps in one interpreter: oslo.config's CONF is global, so clear it between commands
_SETUP = """
import sys
from keystone.cmd import cli
conf, user, group, password, url, region = sys.argv[1:7]
for step in (["db_sync"],
             ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
             ["credential_setup", "--keystone-user", user, "--keystone-group", group],
             ["bootstrap", "--bootstrap-password", password, "--bootstrap-region-id", region,
              "--bootstrap-public-url", url, "--bootstrap-internal-url", url, "--bootstrap-admin-url", url]):
    cli.CONF.clear()
    cli.main(["keystone-manage", "--config-file", conf, *step])
"""

# oslo.config parses sys.argv when keystone configures itself: under gunicorn that is gunicorn's argv
_WSGI = """
import sys
sys.argv = sys.argv[:1]
from keystone.server import wsgi
application = wsgi.initialize_public_application()
"""


def keystone_venv() -> Path:
    """The venv holding keystone + gunicorn: ``$KEYSTONE_VENV`` or ``.cache/keystone-venv``."""
    return Path(os.environ.get("KEYSTONE_VENV") or DEFAULT_VENV)


def venv_problem(venv: Path | None = None) -> str | None:
    """Why ``venv`` cannot run Keystone (None when it can); cheap: no import of keystone."""
    venv = venv or keystone_venv()
    for exe in ("python", "gunicorn", "keystone-manage"):
        if not (venv / "bin" / exe).is_file():
            return f"no {exe} in {venv}/bin (the Keystone venv is missing or incomplete)"
    if not any(venv.glob("lib/python3*/site-packages/keystone/server/wsgi.py")):
        return f"keystone is not installed in {venv}"
    return None


class KeystoneError(DevServerError):
    """A call to the identity API failed; the message has the method, path and status (no secret)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class KeystoneServer:
    """A running Keystone. ``auth_url`` (``.../v3``) is what clients take."""

    url: str
    admin_password: str = field(repr=False)
    pid: int
    workdir: Path
    region: str = REGION
    admin_user: str = "admin"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/v3"

    # -- the identity API -----------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None, *, token: str | None = None,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201, 204)
                ) -> tuple[int, dict[str, str], Any]:
        """``method`` ``/v3/<path>``; returns (status, headers, JSON or None). Raises unless status in ``ok``."""
        req = urllib.request.Request(f"{self.auth_url}/{path.lstrip('/')}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("X-Auth-Token", token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, got, raw = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, got, raw = e.code, dict(e.headers), e.read()
        if status not in ok:
            raise KeystoneError(f"keystone {method} /v3/{path.lstrip('/')}: HTTP {status} {raw[:300]!r}", status)
        return status, got, (json.loads(raw) if raw.strip() else None)

    def issue_token(self, user: str, password: str, *, project: str | None = None, system: bool = False,
                    domain: str = "default") -> str:
        """A token for ``user`` (password auth), scoped to ``project`` (by name) or to the system."""
        auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": domain}, "password": password}}}}
        if system:
            auth["scope"] = {"system": {"all": True}}
        elif project:
            auth["scope"] = {"project": {"name": project, "domain": {"id": domain}}}
        _, headers, _ = self.request("POST", "auth/tokens", {"auth": auth})
        return headers["X-Subject-Token"]

    def admin_token(self) -> str:
        """A system-scoped token of the bootstrap admin (what the admin API calls below use)."""
        return self.issue_token(self.admin_user, self.admin_password, system=True)

    def revoke_token(self, token: str, *, admin_token: str | None = None) -> None:
        """``DELETE /v3/auth/tokens``: ``token`` is refused from now on (Keystone keeps a revocation event)."""
        self.request("DELETE", "auth/tokens", token=admin_token or self.admin_token(),
                     headers={"X-Subject-Token": token})

    def token_is_valid(self, token: str, *, admin_token: str | None = None) -> bool:
        status, _, _ = self.request("HEAD", "auth/tokens", token=admin_token or self.admin_token(),
                                    headers={"X-Subject-Token": token}, ok=(200, 404))
        return status == 200

    def _find(self, collection: str, name: str, admin: str) -> str | None:
        _, _, body = self.request("GET", f"{collection}?name={name}", token=admin)
        found = body[collection]
        return found[0]["id"] if found else None

    def ensure_project(self, name: str, *, admin: str, domain: str = "default") -> str:
        existing = self._find("projects", name, admin)
        if existing:
            return existing
        _, _, body = self.request("POST", "projects", {"project": {"name": name, "domain_id": domain}}, token=admin)
        return body["project"]["id"]

    def ensure_user(self, name: str, password: str, *, admin: str, project_id: str | None = None,
                    domain: str = "default") -> str:
        existing = self._find("users", name, admin)
        if existing:
            self.request("PATCH", f"users/{existing}", {"user": {"password": password}}, token=admin)
            return existing
        user: dict[str, Any] = {"name": name, "password": password, "domain_id": domain, "enabled": True}
        if project_id:
            user["default_project_id"] = project_id
        _, _, body = self.request("POST", "users", {"user": user}, token=admin)
        return body["user"]["id"]

    def role_id(self, name: str, *, admin: str) -> str:
        found = self._find("roles", name, admin)
        if found:
            return found
        _, _, body = self.request("POST", "roles", {"role": {"name": name}}, token=admin)
        return body["role"]["id"]

    def grant(self, role: str, *, user_id: str, project_id: str, admin: str) -> None:
        role_id = self.role_id(role, admin=admin)
        self.request("PUT", f"projects/{project_id}/users/{user_id}/roles/{role_id}", token=admin)

    def add_endpoint(self, service_type: str, service_name: str, url: str, *, admin: str,
                     interfaces: tuple[str, ...] = ("public", "internal", "admin"), region: str | None = None) -> str:
        """Register ``service_type`` (once) with ``url`` for each interface; returns the service id.

        ``url`` may hold Keystone's catalog substitutions, e.g. ``.../v1/AUTH_$(project_id)s``.
        """
        _, _, body = self.request("GET", f"services?type={service_type}", token=admin)
        if body["services"]:
            service_id = body["services"][0]["id"]
        else:
            _, _, made = self.request("POST", "services", {"service": {
                "type": service_type, "name": service_name, "enabled": True}}, token=admin)
            service_id = made["service"]["id"]
        for interface in interfaces:
            self.request("POST", "endpoints", {"endpoint": {
                "service_id": service_id, "interface": interface, "url": url,
                "region_id": region or self.region, "enabled": True}}, token=admin)
        return service_id


@dataclass(frozen=True)
class SwiftAccounts:
    """What :func:`provision_swift` made: a storage user, and the Swift proxy's own service user."""

    project_name: str
    project_id: str
    username: str
    password: str = field(repr=False)
    service_project: str = "service"
    service_user: str = "swift"
    service_password: str = field(default="", repr=False)
    user_domain: str = "Default"
    project_domain: str = "Default"


def provision_swift(server: KeystoneServer, proxy_url: str, *, project: str = "swiftproj",
                    username: str = "swiftuser", password: str | None = None,
                    operator_role: str = "member") -> SwiftAccounts:
    """Make a project + user (role ``operator_role``, which the proxy's keystoneauth lists in
    ``operator_roles``), a ``service`` project with user ``swift`` holding the ``service`` role (Keystone's
    policy lets the ``service`` role validate tokens: what the proxy's authtoken middleware does), and the
    ``object-store`` catalog entry ``<proxy_url>/v1/AUTH_$(project_id)s`` (Keystone's spelling of
    ``%(tenant_id)s``) in every interface."""
    admin = server.admin_token()
    password = password or f"Kv3-{secrets.token_hex(10)}"
    service_password = f"svc-{secrets.token_hex(10)}"
    project_id = server.ensure_project(project, admin=admin)
    user_id = server.ensure_user(username, password, admin=admin, project_id=project_id)
    server.grant(operator_role, user_id=user_id, project_id=project_id, admin=admin)
    service_project_id = server.ensure_project("service", admin=admin)
    service_user_id = server.ensure_user("swift", service_password, admin=admin, project_id=service_project_id)
    server.grant("service", user_id=service_user_id, project_id=service_project_id, admin=admin)
    server.add_endpoint("object-store", "swift", f"{proxy_url.rstrip('/')}/v1/AUTH_$(project_id)s", admin=admin)
    return SwiftAccounts(project_name=project, project_id=project_id, username=username, password=password,
                         service_project="service", service_user="swift", service_password=service_password)


def _config(workdir: Path) -> str:
    return "\n".join([
        "[DEFAULT]",
        "use_stderr = true",
        "debug = false",
        "[database]",
        f"connection = sqlite:///{workdir / 'keystone.db'}",
        "[token]",
        "provider = fernet",
        "[fernet_tokens]",
        f"key_repository = {workdir / 'fernet-keys'}",
        "[fernet_receipts]",
        f"key_repository = {workdir / 'fernet-keys'}",
        "[credential]",
        f"key_repository = {workdir / 'credential-keys'}",
        # Without a cache one token validation runs ~450 SQL queries (1-2 s on a busy 2-core machine, which
        # times out Swift's authtoken middleware); the in-process memory cache is right for one worker
        # process, and Keystone invalidates it itself when a token is revoked.
        "[cache]",
        "enabled = true",
        "backend = dogpile.cache.memory",
        # bcrypt's default 12 rounds take ~0.3 s per password check; 4 is bcrypt's minimum (test data only)
        "[identity]",
        "password_hash_rounds = 4",
        "",
    ])


@contextmanager
def keystone(workdir: Path, *, venv: Path | None = None, start_timeout: float = 180,
             threads: int = 8) -> Iterator[KeystoneServer]:
    """Set up and serve a Keystone from ``workdir`` (config, sqlite db, keys, ``setup.log``, ``keystone.log``)
    on a free 127.0.0.1 port; yield a :class:`KeystoneServer`. Stopped by its PID on exit."""
    venv = venv or keystone_venv()
    problem = venv_problem(venv)
    if problem:
        raise DevServerError(f"{problem}: {BUILD_HINT}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("fernet-keys", "credential-keys"):
        (workdir / sub).mkdir(mode=0o700, exist_ok=True)  # Keystone warns on each use of a world-readable one
    conf = workdir / "keystone.conf"
    conf.write_text(_config(workdir))
    (workdir / "keystone_wsgi.py").write_text(_WSGI)
    port = process.free_port()
    url = f"http://127.0.0.1:{port}"
    admin_password = f"adm-{secrets.token_hex(12)}"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OS_KEYSTONE_CONFIG_FILES": str(conf)}
    env.pop("PYTHONPATH", None)  # nothing of the project's venv may leak into Keystone's
    t0 = time.monotonic()
    process.run([venv / "bin" / "python", "-c", _SETUP, conf, pwd.getpwuid(os.getuid()).pw_name,
                 grp.getgrgid(os.getgid()).gr_name, admin_password, f"{url}/v3", REGION],
                log_path=workdir / "setup.log", env=env, timeout=start_timeout, what="keystone setup")
    setup_s = time.monotonic() - t0
    log_path = workdir / "keystone.log"
    proc = process.start(
        [venv / "bin" / "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", str(threads),
         "--worker-class", "gthread", "--preload", "--no-control-socket", "--graceful-timeout", "1",
         "--timeout", "120", "--pythonpath", workdir, "--access-logfile", "-", "keystone_wsgi:application"],
        log_path=log_path, env=env, cwd=workdir)
    try:
        process.wait_http(f"{url}/v3", timeout=start_timeout, proc=proc, log_path=log_path)
        server = KeystoneServer(url=url, admin_password=admin_password, pid=proc.pid, workdir=workdir)
        server.admin_token()  # the database answers too, not only the version document
        log.info("keystone pid %d ready at %s: setup %.1f s, serving after %.1f s", proc.pid, url, setup_s,
                 time.monotonic() - t0 - setup_s)
        yield server
    finally:
        took = process.stop(proc, timeout=STOP_TIMEOUT, what="keystone (gunicorn)")
        log.info("keystone pid %d stopped in %.2f s", proc.pid, took)
