"""Hand a package over through an OCI registry: push a package folder as one artifact, pull it back verified.

The artifact is an OCI image manifest whose ``artifactType`` is :data:`ARTIFACT_TYPE`, with the empty
config (``application/vnd.oci.empty.v1+json``, ``{}``) and one layer per package file. Each layer's
``org.opencontainers.image.title`` is the file's path relative to the package root (``items.parquet``,
``relocated/assets.lock.parquet``), like stacpkg's artifacts, whose layout it follows with our own media
types; stacpkg's artifacts (:data:`STACPKG_ARTIFACT_TYPE`) are pulled too.

Pull is defensive: every title is checked before a byte is fetched (no absolute paths, no ``..``, no
backslashes, no duplicates); every layer is streamed to a staging folder through sha256 and refused if
its digest or size differs from the manifest; the output folder appears only when every layer verified.
Large layers are pushed in chunks and pulled as streams, never read whole into memory.

Only oras-py's public :class:`oras.provider.Registry` methods are used. Credentials: ``ORAS_USER`` /
``ORAS_PASS`` in the environment, else the Docker config (``~/.docker/config.json``) as oras reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from packager.errors import PackagerError

ARTIFACT_TYPE = "application/vnd.stac-packager.package.v1+json"
STACPKG_ARTIFACT_TYPE = "application/vnd.stacpkg.package.v1+json"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"

#: media type of each package file by its relative path (see :mod:`packager.package`)
LAYER_TYPES = {
    "items.parquet": "application/vnd.stac-packager.items.v1.parquet",
    "assets.lock.parquet": "application/vnd.stac-packager.asset-lock.v1.parquet",
    "lock-failures.parquet": "application/vnd.stac-packager.failures.v1.parquet",
    "relocated/items.parquet": "application/vnd.stac-packager.relocated-items.v1.parquet",
    "relocated/assets.lock.parquet": "application/vnd.stac-packager.relocated-asset-lock.v1.parquet",
    "relocated/failures.parquet": "application/vnd.stac-packager.failures.v1.parquet",
    "validation/report.parquet": "application/vnd.stac-packager.validation-report.v1.parquet",
    "search/request.json": "application/vnd.stac-packager.search-request.v1+json",
    "search/items.ndjson": "application/vnd.stac-packager.search-items.v1+ndjson",
}
#: any other file of the package (e.g. relocated copies under ``assets/``)
FILE_TYPE = "application/vnd.stac-packager.file.v1"
STACPKG_ZIP_TYPE = "application/vnd.stacpkg.files.v1+zip"
CHUNK = 16 << 20


class OciError(PackagerError):
    """The registry could not be reached or refused a request (retrying may help)."""

    code = "oci"


class OciIntegrityError(PackagerError):
    """A pulled layer or manifest is not what the manifest or reference says (tampered or corrupt)."""

    code = "oci_integrity"


class OciContentError(PackagerError, ValueError):
    """The artifact is not a package we can unpack safely (unsafe title, unknown artifact type...)."""

    code = "oci_content"


@dataclass
class PushSummary:
    reference: str
    digest: str | None
    layers: list[dict] = field(default_factory=list)
    bytes: int = 0


@dataclass
class PullSummary:
    reference: str
    output: str
    artifact_type: str | None
    files: list[dict] = field(default_factory=list)
    bytes: int = 0


# -- registry client ------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name in ("localhost", "[::1]") or name.startswith("127.")


def registry_for(reference: str, *, plain_http: bool | None = None, insecure: bool = False,
                 auth_backend: str = "token"):
    """An oras ``Registry`` for the host of ``reference`` and the parsed container.

    ``plain_http`` None: plain HTTP for loopback hosts (a local test registry), HTTPS elsewhere.
    """
    import oras.container
    import oras.provider

    try:
        container = oras.container.Container(reference)
    except ValueError as exc:
        raise OciContentError(f"{reference!r} is not an OCI reference: write HOST[:PORT]/NAME[:TAG|@DIGEST] "
                              f"({exc})") from None
    if plain_http is None:
        plain_http = _is_loopback(container.registry)
    registry = oras.provider.Registry(hostname=container.registry, insecure=plain_http,
                                      tls_verify=not insecure, auth_backend=auth_backend)
    user, password = os.environ.get("ORAS_USER"), os.environ.get("ORAS_PASS")
    if user and password:
        registry.auth.set_basic_auth(user, password)
    else:
        registry.auth.load_configs(container)
    return registry, container


def _request(registry, method: str, url: str, what: str, **kwargs):
    import requests

    try:
        return registry.do_request(url, method, **kwargs)
    except (requests.RequestException, OSError) as exc:
        raise OciError(f"{what}: cannot reach the registry ({exc}); check the host, port and --plain-http") from None
    except ValueError as exc:  # oras: "Cannot respond to request for authentication."
        raise OciError(f"{what}: {exc}; set ORAS_USER / ORAS_PASS or log in with a Docker config") from None


def _check(response, what: str) -> None:
    if response.status_code not in (200, 201, 202):
        detail = response.text[:300].strip()
        raise OciError(f"{what}: registry answered HTTP {response.status_code} {detail}")


def pinned_reference(reference: str, digest: str | None) -> str:
    """``host/name@sha256:...``: the reference that always names these exact bytes."""
    import oras.container

    container = oras.container.Container(reference)
    return f"{container.registry}/{container.api_prefix}@{digest}"


# -- push -----------------------------------------------------------------------------------------
def package_files(package_dir: Path) -> list[tuple[str, Path]]:
    """``(title, path)`` of every regular file under ``package_dir``, sorted; dotfiles (temp files) skipped."""
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise OciContentError(f"package {package_dir} is not a folder: push takes a local package folder")
    files = []
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() or path.is_symlink():
            continue
        files.append((relative.as_posix(), path))
    if not any(title == "items.parquet" for title, _ in files):
        raise OciContentError(f"{package_dir} has no items.parquet: build the package before pushing it")
    return files


def _digest_file(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return "sha256:" + sha.hexdigest(), size


def push(package_dir: Path, reference: str, *, plain_http: bool | None = None, insecure: bool = False,
         auth_backend: str = "token", annotations: dict[str, str] | None = None,
         progress: Callable[[int, int], None] | None = None) -> PushSummary:
    """Push every file of ``package_dir`` as one layer of an artifact tagged ``reference``."""
    registry, container = registry_for(reference, plain_http=plain_http, insecure=insecure,
                                       auth_backend=auth_backend)
    files = package_files(Path(package_dir))
    summary = PushSummary(reference=reference, digest=None)
    for done, (title, path) in enumerate(files, start=1):
        digest, size = _digest_file(path)
        layer = {"mediaType": LAYER_TYPES.get(title, FILE_TYPE), "digest": digest, "size": size,
                 "annotations": {TITLE: title}}
        what = f"push {title} ({digest})"
        try:
            response = registry.upload_blob(str(path), container, layer, do_chunked=size > CHUNK, chunk_size=CHUNK)
        except ValueError as exc:  # oras raises ValueError for a missing upload session
            raise OciError(f"{what}: {exc}") from None
        except Exception as exc:
            import requests

            if isinstance(exc, requests.RequestException | OSError):
                raise OciError(f"{what}: cannot reach the registry ({exc}); check the host and --plain-http") from None
            raise
        _check(response, what)
        summary.layers.append(layer)
        summary.bytes += size
        if progress:
            progress(done, len(files))
    with tempfile.TemporaryDirectory(prefix="stac-packager-oci-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_bytes(EMPTY_CONFIG)
        config = {"mediaType": EMPTY_CONFIG_TYPE, "digest": "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest(),
                  "size": len(EMPTY_CONFIG)}
        try:
            _check(registry.upload_blob(str(config_path), container, config), "push config")
        except ValueError as exc:
            raise OciError(f"push config: {exc}") from None
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE, "config": config,
        "layers": summary.layers,
        "annotations": {CREATED: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **(annotations or {})},
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    url = f"{registry.prefix}://{container.manifest_url()}"
    response = _request(registry, "PUT", url, f"push manifest to {reference}",
                        data=body, headers={"Content-Type": MANIFEST_TYPE})
    _check(response, f"push manifest to {reference}")
    summary.digest = response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
    return summary


# -- pull -----------------------------------------------------------------------------------------
def safe_title(title: str | None, digest: str) -> str:
    """The layer title as a safe relative POSIX path, or :class:`OciContentError` naming the layer."""
    if not title:
        raise OciContentError(f"layer {digest} has no {TITLE} annotation: cannot tell where it belongs")
    path = PurePosixPath(title)
    if (title.startswith("/") or "\\" in title or "\x00" in title or path.is_absolute()
            or any(part in ("..", ".", "") for part in title.split("/")) or ":" in path.parts[0]):
        raise OciContentError(f"layer {digest} has the unsafe title {title!r} (absolute or with '..'): "
                              "refusing to pull this artifact")
    return str(path)


def fetch_manifest(registry, container, reference: str) -> dict:
    """The manifest of ``reference``; checked against the reference's digest when it names one."""
    accept = ", ".join([MANIFEST_TYPE, "application/vnd.docker.distribution.manifest.v2+json"])
    response = _request(registry, "GET", f"{registry.prefix}://{container.manifest_url()}",
                        f"pull manifest of {reference}", headers={"Accept": accept})
    if response.status_code == 404:
        raise OciError(f"{reference} not found in the registry (HTTP 404): check the name and tag")
    _check(response, f"pull manifest of {reference}")
    if container.digest:
        observed = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if observed != container.digest:
            raise OciIntegrityError(f"manifest of {reference} has digest {observed}, not {container.digest}: "
                                    "the registry served other bytes than the reference names")
    try:
        return json.loads(response.content)
    except ValueError:
        raise OciIntegrityError(f"manifest of {reference} is not JSON") from None


def _download(registry, container, layer: dict, dest: Path) -> int:
    digest, expected_size = layer["digest"], layer.get("size")
    algo, _, expected_hex = digest.partition(":")
    if algo != "sha256":
        raise OciContentError(f"layer {digest}: only sha256 digests are supported")
    url = f"{registry.prefix}://{container.get_blob_url(digest)}"
    response = _request(registry, "GET", url, f"pull layer {digest}", stream=True)
    with response:
        _check(response, f"pull layer {digest}")
        sha, size = hashlib.sha256(), 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as handle:
            for chunk in response.iter_content(chunk_size=1 << 20):
                sha.update(chunk)
                size += len(chunk)
                handle.write(chunk)
    title = (layer.get("annotations") or {}).get(TITLE)
    if sha.hexdigest() != expected_hex:
        raise OciIntegrityError(f"layer {digest} ({title}) does not match its digest: the registry served bytes "
                                f"with sha256:{sha.hexdigest()}; the artifact is corrupt or was tampered with, "
                                "nothing was written")
    if expected_size is not None and size != expected_size:
        raise OciIntegrityError(f"layer {digest} ({title}) has {size} bytes, the manifest says {expected_size}")
    return size


def _extract_zip(archive: Path, root: Path, digest: str) -> list[str]:
    """stacpkg packs extra folders as ZIP layers; unpack them under ``root`` with the same path checks."""
    names = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = safe_title(info.filename, f"{digest} entry {info.filename!r}")
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            names.append(name)
    return names


def pull(reference: str, output: Path, *, plain_http: bool | None = None, insecure: bool = False,
         auth_backend: str = "token", progress: Callable[[int, int], None] | None = None) -> PullSummary:
    """Pull the package ``reference`` into the new (or empty) folder ``output``, every layer verified."""
    output = Path(output).absolute()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OciContentError(f"output {output} exists and is not an empty folder: pull into a new folder")
    registry, container = registry_for(reference, plain_http=plain_http, insecure=insecure,
                                       auth_backend=auth_backend)
    manifest = fetch_manifest(registry, container, reference)
    artifact_type = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
    if artifact_type not in (ARTIFACT_TYPE, STACPKG_ARTIFACT_TYPE):
        raise OciContentError(f"{reference} is not a package (artifactType {artifact_type!r}; expected "
                              f"{ARTIFACT_TYPE} or stacpkg's {STACPKG_ARTIFACT_TYPE})")
    layers = manifest.get("layers") or []
    titles: dict[str, str] = {}
    for layer in layers:  # every title checked before any byte is fetched
        digest = str(layer.get("digest"))
        title = safe_title((layer.get("annotations") or {}).get(TITLE), digest)
        if title in titles:
            raise OciContentError(f"layers {titles[title]} and {digest} share the title {title!r}")
        titles[title] = digest
    summary = PullSummary(reference=reference, output=str(output), artifact_type=artifact_type)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.pull-", dir=output.parent))
    try:
        for done, layer in enumerate(layers, start=1):
            title = (layer.get("annotations") or {})[TITLE]
            if layer.get("mediaType") == STACPKG_ZIP_TYPE:
                archive = staging / ".zip" / layer["digest"].replace(":", "_")
                size = _download(registry, container, layer, archive)
                for name in _extract_zip(archive, staging, layer["digest"]):
                    summary.files.append({"path": name, "digest": layer["digest"], "from_zip": True})
                archive.unlink()
            else:
                size = _download(registry, container, layer, staging / title)
                summary.files.append({"path": title, "digest": layer["digest"], "size": size,
                                      "media_type": layer.get("mediaType")})
            summary.bytes += size
            if progress:
                progress(done, len(layers))
        shutil.rmtree(staging / ".zip", ignore_errors=True)
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary
