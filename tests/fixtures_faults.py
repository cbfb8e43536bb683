"""pytest fixtures that put a fault-injecting proxy (:mod:`devservers.faultproxy`) in front of the real servers.

* ``fault_proxy_factory(upstream, **kwargs) -> FaultProxy``: a started proxy, stopped after the test.
* ``flaky_s3`` -> :class:`FlakyS3`: a source and a destination bucket on ``s3_endpoint``, reached through one
  proxy (SigV4 signs the ``Host`` the client talks to; the proxy forwards it unchanged, and SeaweedFS checks
  the signature against it, so the signature holds).
* ``flaky_swift`` -> :class:`FlakySwift`: two containers on ``swift_server``; the profiles authenticate
  through the proxy, and TempAuth builds the storage URL from the ``Host`` it received, so every storage
  request goes through the proxy too (checked by the fixture).
* ``flaky_webdav`` -> :class:`FlakyWebDav`: two proxies in front of one WebDAV server (``flaky_webdav_server``,
  wsgidav with more threads than ``webdav_server``): two origins, so a relocation between them streams the
  bytes instead of a server-side COPY.

Each gives the storage profiles a run through the proxy needs, and direct (unproxied) access to the server
for seeding and for checking what really landed there. Faults start switched off: a test sets them with
``flaky.set_faults(...)`` (every proxy of the backend) or on one proxy. ``flaky.explain(hrefs)`` tells what
the proxies saw of some objects (for failure messages).

Numbers: tests add one record per run to :data:`FAULT_RUNS` (:func:`record_fault_run`); at the end of the
session they are printed per fault kind and, when ``FAULT_STATS_JSON`` names a file, written there as JSON.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devservers.faultproxy import FaultProxy
from devservers.webdav import WebDavServer, wsgidav_server
from packager.profiles import StorageProfile
from packager.stores.webdav import TEMP_PREFIX

FAULT_RUNS: list[dict[str, Any]] = []


def record_fault_run(record: dict[str, Any]) -> None:
    FAULT_RUNS.append(record)


@pytest.fixture
def fault_proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    """``make(upstream_url, seed=..., spare=..., slow_delay=...) -> FaultProxy`` (started; stopped afterwards)."""
    started: list[FaultProxy] = []

    def make(upstream: str, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@dataclass
class Flaky:
    """What a fault test needs of one backend: proxies, profiles through them, direct access to the server."""

    name: str
    proxies: list[FaultProxy]
    source: str  # href prefix of the source objects (through the proxy)
    target: str  # href of the relocation target prefix (through the proxy)
    extra: dict[str, Any] = field(default_factory=dict)

    def set_faults(self, **rates: float) -> None:
        for proxy in self.proxies:
            proxy.set_faults(**rates)

    def stats(self) -> dict[str, Any]:
        """Faults injected, requests and wire-level retries, summed over the proxies."""
        total: dict[str, Any] = {"requests": 0, "injected": {}, "variants": {}, "retried": 0}
        for proxy in self.proxies:
            stats = proxy.stats()
            total["requests"] += stats["requests"]
            total["retried"] += stats["retried"]
            for name in ("injected", "variants"):
                for key, value in stats[name].items():
                    total[name][key] = total[name].get(key, 0) + value
        return total

    def errors(self) -> list[str]:
        return [e for proxy in self.proxies for e in proxy.errors]

    def explain(self, hrefs: list[str]) -> str:
        """What the proxies saw for the objects behind ``hrefs``: every request answered and every fault."""
        lines = []
        for href in hrefs:
            key = href.split("://", 1)[-1].split("/", 1)[-1]
            temp = key.rsplit("/", 1)[0] + "/" + TEMP_PREFIX  # WebDAV uploads go to a temporary beside it

            def about(path: str, key: str = key, temp: str = temp) -> bool:
                return key in path or temp in path

            lines.append(f"{href}:")
            for proxy in self.proxies:
                seen = [(t, f"{m} {p} -> {status or 'received'} (client port {port})")
                        for t, m, p, status, port in proxy.trace if about(p)]
                seen += [(e.at, f"FAULT {e.kind}:{e.variant} {e.method} {e.path}") for e in proxy.events
                         if about(e.path)]
                lines += [f"  [{proxy.name}] {t:.3f} {what}" for t, what in sorted(seen)]
        return "\n".join(lines)

    def seed_many(self, objects: dict[str, bytes]) -> None:
        """Put ``key -> bytes`` straight onto the server (not through the proxy), a few at a time."""
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: self.seed(*kv), objects.items()))

    # backend specifics, overridden below
    def profiles(self, timeout: str) -> list[StorageProfile]:
        raise NotImplementedError

    def seed(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def target_objects(self) -> dict[str, bytes]:
        """key (relative to the target prefix) -> bytes, read straight from the server."""
        raise NotImplementedError

    def garbage(self) -> list[str]:
        """Leftovers of failed attempts outside the final keys (incomplete uploads, orphan segments, temporaries)."""
        raise NotImplementedError


class FlakyS3(Flaky):
    def profiles(self, timeout: str) -> list[StorageProfile]:
        server = self.extra["server"]
        return [StorageProfile(name=f"flaky-{bucket}", url=f"s3://{bucket}", endpoint=self.proxies[0].url,
                               region=server.region, access_key_id=server.access_key_id,
                               secret_access_key=server.secret_access_key, timeout=timeout)
                for bucket in (self.extra["src"], self.extra["dst"])]

    def seed(self, key: str, data: bytes) -> None:
        self.extra["client"].put_object(Bucket=self.extra["src"], Key=key, Body=data)

    def target_objects(self) -> dict[str, bytes]:
        client, bucket = self.extra["client"], self.extra["dst"]
        keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="mirror/")
                for obj in page.get("Contents", [])]
        with ThreadPoolExecutor(8) as pool:
            bodies = pool.map(lambda k: client.get_object(Bucket=bucket, Key=k)["Body"].read(), keys)
            return {k[len("mirror/"):]: body for k, body in zip(keys, bodies, strict=True)}

    def garbage(self) -> list[str]:
        uploads = self.extra["client"].list_multipart_uploads(Bucket=self.extra["dst"]).get("Uploads", [])
        return [f"incomplete multipart upload {u['Key']} {u['UploadId']}" for u in uploads]


class FlakySwift(Flaky):
    def profiles(self, timeout: str) -> list[StorageProfile]:
        server = self.extra["server"]
        # 2 MiB segments: objects above that are written as static large objects (segments + manifest)
        return [StorageProfile(name=f"flaky-{container}", url=f"swift://{container}",
                               auth_url=self.proxies[0].url + "/auth/v1.0", user=server.user, key=server.key,
                               segment_size_mib=2, timeout=timeout)
                for container in (self.extra["src"], self.extra["dst"])]

    def direct(self) -> Any:
        """A direct connection of this thread (they are not thread-safe; one per worker thread)."""
        from swiftclient.client import Connection

        local = self.extra.setdefault("local", threading.local())
        if not hasattr(local, "conn"):
            server = self.extra["server"]
            local.conn = Connection(preauthurl=server.storage_url, preauthtoken=server.token, retries=2)
        return local.conn

    def seed(self, key: str, data: bytes) -> None:
        self.direct().put_object(self.extra["src"], key, data)

    def target_objects(self) -> dict[str, bytes]:
        conn, container = self.extra["conn"], self.extra["dst"]
        names = [e["name"] for e in conn.get_container(container, prefix="mirror/", full_listing=True)[1]]
        with ThreadPoolExecutor(8) as pool:
            bodies = pool.map(lambda n: self.direct().get_object(container, n)[1], names)
            return {n[len("mirror/"):]: body for n, body in zip(names, bodies, strict=True)}

    def garbage(self) -> list[str]:
        """Segments no manifest under the target references."""
        conn, container = self.extra["conn"], self.extra["dst"]
        segments_container = f"{container}_segments"
        try:
            segments = {e["name"] for e in conn.get_container(segments_container, full_listing=True)[1]}
        except Exception:  # noqa: BLE001 - no segment container: nothing was segmented
            return []
        used = set()
        for entry in conn.get_container(container, full_listing=True)[1]:
            if entry.get("slo_etag"):  # a static large object: its manifest names its segments
                manifest = json.loads(conn.get_object(container, entry["name"],
                                                      query_string="multipart-manifest=get")[1])
                used |= {seg["name"].split("/", 2)[2] for seg in manifest}
        return [f"orphan segment {name}" for name in sorted(segments - used)]


class FlakyWebDav(Flaky):
    def profiles(self, timeout: str) -> list[StorageProfile]:
        server = self.extra["server"]
        return [StorageProfile(name=f"flaky-dav-{i}", url=f"webdav://{proxy.netloc}", username=server.user,
                               password=server.password, timeout=timeout)
                for i, proxy in enumerate(self.proxies)]

    def seed(self, key: str, data: bytes) -> None:
        path = self.extra["root"] / self.extra["src"] / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def target_objects(self) -> dict[str, bytes]:
        base: Path = self.extra["root"] / self.extra["dst"]
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(TEMP_PREFIX)}

    def garbage(self) -> list[str]:
        base: Path = self.extra["root"] / self.extra["dst"]
        return [f"temporary upload {p.relative_to(base)}" for p in base.rglob(f"{TEMP_PREFIX}*")]


@pytest.fixture
def flaky_s3(s3_endpoint, s3_client, s3_bucket_factory, fault_proxy_factory) -> FlakyS3:
    src, dst = s3_bucket_factory(), s3_bucket_factory()
    proxy = fault_proxy_factory(s3_endpoint.endpoint, name="s3")
    return FlakyS3("s3", [proxy], source=f"s3://{src}", target=f"s3://{dst}/mirror",
                   extra={"server": s3_endpoint, "client": s3_client, "src": src, "dst": dst})


@pytest.fixture
def flaky_swift(swift_server, swift_container, fault_proxy_factory) -> Iterator[FlakySwift]:
    from swiftclient.client import Connection

    proxy = fault_proxy_factory(swift_server.auth_url.rsplit("/auth/", 1)[0], name="swift")
    conn = Connection(preauthurl=swift_server.storage_url, preauthtoken=swift_server.token, retries=2)
    dst = f"{swift_container}-dst"
    conn.put_container(dst)
    # TempAuth builds the storage URL from the Host header it received: through the proxy, it is the proxy's
    via_proxy = Connection(authurl=proxy.url + "/auth/v1.0", user=swift_server.user, key=swift_server.key)
    storage_url, _ = via_proxy.get_auth()
    assert storage_url.startswith(proxy.url + "/"), f"storage URL {storage_url} bypasses the fault proxy"
    flaky = FlakySwift("swift", [proxy], source=f"swift://{swift_container}", target=f"swift://{dst}/mirror",
                       extra={"server": swift_server, "conn": conn, "src": swift_container, "dst": dst})
    yield flaky
    for container in (dst, f"{dst}_segments", swift_container):  # (the source's objects too: faster here)
        try:
            names = [obj["name"] for obj in conn.get_container(container, full_listing=True)[1]]
        except Exception:  # noqa: BLE001 - a segment container may never have been made
            continue
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n, c=container: flaky.direct().delete_object(c, n), names))
        if container != swift_container:  # swift_container deletes its own container
            conn.delete_container(container)


@pytest.fixture(scope="session")
def flaky_webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDavServer]:
    """A WebDAV server of its own with more worker threads than ``webdav_server``'s 16: a relocation between
    two origins of one server holds a thread per streaming PUT *and* one per GET feeding it, and retries
    add more; with 16 threads the PUTs can take every thread while their GETs wait in the queue."""
    with wsgidav_server(tmp_path_factory.mktemp("flaky-dav"), threads=64) as server:
        yield server


@pytest.fixture
def flaky_webdav(flaky_webdav_server, fault_proxy_factory) -> Iterator[FlakyWebDav]:
    import shutil

    webdav_server = flaky_webdav_server
    run = uuid.uuid4().hex[:10]
    src_proxy = fault_proxy_factory(webdav_server.url, name="dav-src")
    dst_proxy = fault_proxy_factory(webdav_server.url, name="dav-dst")
    src, dst = f"flaky-{run}/src", f"flaky-{run}/mirror"
    yield FlakyWebDav("webdav", [src_proxy, dst_proxy], source=f"webdav://{src_proxy.netloc}/{src}",
                      target=f"webdav://{dst_proxy.netloc}/{dst}",
                      extra={"server": webdav_server, "root": webdav_server.root, "src": src, "dst": dst})
    shutil.rmtree(webdav_server.root / f"flaky-{run}", ignore_errors=True)


# -- the numbers ------------------------------------------------------------------------------------------
def fault_kind_summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per fault kind: runs, faults injected, retries (engine rows + store clients, and seen on the wire),
    objects verified, lost, corrupt."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        kind = out.setdefault(run["fault"], {"runs": 0, "backends": [], "injected": 0, "retries": 0,
                                             "row_retries": 0, "client_retries": 0, "wire_retries": 0,
                                             "objects_verified": 0, "lost": 0, "corrupt": 0, "seconds": 0.0})
        kind["runs"] += 1
        kind["backends"].append(run["backend"])
        kind["injected"] += sum(run["injected"].values())
        kind["row_retries"] += run["row_retries"]
        kind["client_retries"] += run["client_retries"]
        kind["retries"] += run["row_retries"] + run["client_retries"]
        kind["wire_retries"] += run["wire_retries"]
        kind["objects_verified"] += run["objects_verified"]
        kind["lost"] += run["lost"]
        kind["corrupt"] += run["corrupt"]
        kind["seconds"] = round(kind["seconds"] + run["seconds"], 2)
    return out


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 - pytest hook
    if not FAULT_RUNS:
        return
    summary = fault_kind_summary(FAULT_RUNS)
    write = terminalreporter.write_line
    terminalreporter.section("flaky stores: per fault kind")
    for kind, s in summary.items():
        write(f"{kind:9s} runs={s['runs']} ({','.join(s['backends'])}) injected={s['injected']} "
              f"retries={s['retries']} (row {s['row_retries']} + client {s['client_retries']}; "
              f"wire {s['wire_retries']}) objects_verified={s['objects_verified']} lost={s['lost']} "
              f"corrupt={s['corrupt']}")
    target = os.environ.get("FAULT_STATS_JSON")
    if target:
        Path(target).write_text(json.dumps({"per_kind": summary, "runs": FAULT_RUNS}, indent=2, default=str))
        write(f"written to {target}")
