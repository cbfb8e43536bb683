"""Offline checks of the Helm chart (helm/stac-packager), its examples, the Dockerfile and the dagster values.

Needs the helm binary installed by ``bash scripts/get-helm.sh`` at ``.tools/bin/helm``: without it these
tests are skipped locally but FAIL under CI (env ``CI`` set). Every rendered manifest is validated against
the Kubernetes 1.33 OpenAPI schemas with ``kubernetes-validate`` (strict: unknown fields are errors).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import posixpath
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "helm" / "stac-packager"
EXAMPLES_DIR = ROOT / "helm" / "examples"
CHART_EXAMPLES = sorted(EXAMPLES_DIR.glob("values-*.yaml"))
DAGSTER_VALUES = EXAMPLES_DIR / "dagster-values.yaml"
RELEASE = "stac-packager"
NAMESPACE = "dagster"
K8S_VERSION = "1.33.0"
# The sha256 of helm v4.3.1 that scripts/get-helm.sh verifies (from the team's dagster-helm notes).
HELM_SHA256 = "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"
# Settings fields that hold credentials: only ever {env: NAME} references.
SECRET_FIELDS = {
    "access_key_id",
    "secret_access_key",
    "session_token",
    "key",
    "password",
    "token",
    "private_key",
    "client_secret",
    "application_credential_secret",
}
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}

# "default" = the chart's own values.yaml; the others are the example values files for our chart.
CASES = ["default", *[p.name for p in CHART_EXAMPLES]]


# --------------------------------------------------------------------------------------------- helpers


def _require_helm() -> Path:
    if HELM.is_file() and os.access(HELM, os.X_OK):
        return HELM
    msg = f"{HELM.relative_to(ROOT)} not found: run `bash scripts/get-helm.sh` first"
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI is set, so a missing helm is an error, not a skip)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def helm() -> Path:
    return _require_helm()


def _run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(_require_helm()), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def _values_args(case: str) -> list[str]:
    return [] if case == "default" else ["-f", str(EXAMPLES_DIR / case)]


@functools.cache
def _render_text(case: str, *extra: str) -> str:
    proc = _run_helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *_values_args(case), *extra)
    assert proc.returncode == 0, f"helm template {case} {extra} failed:\n{proc.stderr}"
    return proc.stdout


def render(case: str, *extra: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(_render_text(case, *extra)) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _deep_merge(base: dict, override: dict) -> dict:
    """Helm's values coalescing: maps merge recursively, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@functools.cache
def _values(case: str) -> str:
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    if case != "default":
        base = _deep_merge(base, yaml.safe_load((EXAMPLES_DIR / case).read_text()) or {})
    return json.dumps(base)


def values(case: str) -> dict:
    return json.loads(_values(case))


def container(docs: list[dict]) -> dict:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_map(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def env_refs(tree) -> set[str]:
    """Names of every {env: NAME} reference in a settings tree."""
    if isinstance(tree, dict):
        if set(tree) == {"env"} and isinstance(tree["env"], str):
            return {tree["env"]}
        return set().union(*(env_refs(v) for v in tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*(env_refs(v) for v in tree)) if tree else set()
    return set()


def secret_leaks(tree, path="settings") -> list[str]:
    """Credential fields whose value is not an {env: NAME} reference."""
    leaks = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            here = f"{path}.{k}"
            if k in SECRET_FIELDS and not (isinstance(v, dict) and set(v) == {"env"}):
                leaks.append(here)
            elif k == "secret_options" and isinstance(v, dict):
                leaks += [
                    f"{here}.{sk}"
                    for sk, sv in v.items()
                    if not (isinstance(sv, dict) and set(sv) == {"env"})
                ]
            else:
                leaks += secret_leaks(v, here)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            leaks += secret_leaks(v, f"{path}[{i}]")
    return leaks


# --------------------------------------------------------------------------------------- lint & render


def test_examples_present():
    assert {p.name for p in CHART_EXAMPLES} >= {
        "values-s3-minio.yaml",
        "values-swift.yaml",
        "values-webdav.yaml",
    }
    assert DAGSTER_VALUES.is_file()


def test_helm_binary_is_the_pinned_one(helm):
    assert hashlib.sha256(helm.read_bytes()).hexdigest() == HELM_SHA256
    assert HELM_SHA256 in (ROOT / "scripts" / "get-helm.sh").read_text()


@pytest.mark.parametrize("case", CASES)
def test_lint_strict(helm, case):
    proc = _run_helm("lint", "--strict", str(CHART), "-n", NAMESPACE, *_values_args(case))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("case", CASES)
def test_rendered_manifests_are_valid_kubernetes(helm, case):
    import kubernetes_validate

    docs = render(case)
    kinds = sorted(d["kind"] for d in docs)
    expected = ["ConfigMap", "Deployment", "Service", "ServiceAccount"]
    if values(case)["podDisruptionBudget"]["enabled"]:
        expected.append("PodDisruptionBudget")
    assert kinds == sorted(expected)
    for doc in docs:
        # Raises ValidationError (with the offending path) on any schema violation or unknown field.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_recommended_labels_and_namespace(helm, case):
    for doc in render(case):
        meta = doc["metadata"]
        assert meta["namespace"] == NAMESPACE
        assert set(meta["labels"]) >= RECOMMENDED_LABELS, (doc["kind"], meta["labels"])
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    deploy = one(render(case), "Deployment")
    selector = deploy["spec"]["selector"]["matchLabels"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert "app.kubernetes.io/version" not in selector  # selectors must survive upgrades


# ------------------------------------------------------------------------------- container and service


@pytest.mark.parametrize("case", CASES)
def test_container_args_and_port(helm, case):
    v = values(case)["codeServer"]
    c = container(render(case))
    head = ["dagster", "api", "grpc"] if v["command"] == "grpc" else ["dagster", "code-server", "start"]
    assert c["args"][: len(head)] == head
    args = c["args"][len(head) :]
    opts = dict(zip(args[::2], args[1::2], strict=False))
    assert opts["-h"] == "0.0.0.0"
    assert opts["-p"] == str(v["port"])
    assert opts["-m"] == v["module"] == "pipelines.definitions"
    assert opts["--location-name"] == v["locationName"] == "stac_packager"
    assert c["ports"] == [{"name": "grpc", "containerPort": v["port"], "protocol": "TCP"}]
    assert "command" not in c  # keep the image's entrypoint (none): args is the full command line


def test_grpc_mode_is_covered():
    assert {values(c)["codeServer"]["command"] for c in CASES} == {"code-server", "grpc"}


@pytest.mark.parametrize("case", CASES)
def test_probes_use_grpc_health_check(helm, case):
    port = values(case)["codeServer"]["port"]
    c = container(render(case))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"] == [
            "dagster",
            "api",
            "grpc-health-check",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ], probe
        assert c[probe]["timeoutSeconds"] >= 5  # the check starts a Python interpreter


@pytest.mark.parametrize("case", CASES)
def test_service_port_matches_container_port(helm, case):
    docs = render(case)
    svc = one(docs, "Service")
    c = container(docs)
    (port,) = svc["spec"]["ports"]
    assert port["port"] == c["ports"][0]["containerPort"] == values(case)["codeServer"]["port"]
    assert port["targetPort"] == c["ports"][0]["name"] == "grpc"
    assert svc["metadata"]["name"] == RELEASE
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("case", CASES)
def test_image_and_dagster_current_image(helm, case):
    v = values(case)["image"]
    c = container(render(case))
    ref = f"{v['repository']}:{v['tag'] or '0.1.0'}" + (f"@{v['digest']}" if v["digest"] else "")
    assert c["image"] == ref
    assert c["imagePullPolicy"] == v["pullPolicy"]
    assert env_map(c)["DAGSTER_CURRENT_IMAGE"]["value"] == c["image"]


@pytest.mark.parametrize("case", CASES)
def test_hardened_pod(helm, case):
    docs = render(case)
    v = values(case)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    volumes = {vol["name"]: vol for vol in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    # Writable scratch space despite the read-only root filesystem.
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts[v["dagsterHome"]]]
    assert env_map(c)["DAGSTER_HOME"]["value"] == v["dagsterHome"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_scheduling_values_are_passed_through(helm):
    pod = one(render("values-swift.yaml"), "Deployment")["spec"]["template"]["spec"]
    ex = values("values-swift.yaml")
    assert pod["tolerations"] == ex["tolerations"]
    assert pod["affinity"] == ex["affinity"]
    pod = one(render("values-s3-minio.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    pod = one(render("values-webdav.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


# ----------------------------------------------------------------------------------- settings and env


def _settings_file(docs: list[dict]) -> tuple[str, dict, str]:
    """(path of the settings file as mounted in the container, parsed settings, ConfigMap name)."""
    cm = one(docs, "ConfigMap")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    (vol,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
    assert mount.get("readOnly") is True
    (key,) = cm["data"]
    return posixpath.join(mount["mountPath"], key), yaml.safe_load(cm["data"][key]), cm["metadata"]["name"]


@pytest.mark.parametrize("case", CASES)
def test_settings_configmap_mounted_and_pointed_to(helm, case):
    docs = render(case)
    path, settings, _ = _settings_file(docs)
    assert env_map(container(docs))["STAC_PACKAGER_CONFIG"] == {"name": "STAC_PACKAGER_CONFIG", "value": path}
    # The file is exactly the settings given in values: profiles, rewrite rules, buckets, keystore ...
    assert settings == values(case)["settings"]


@pytest.mark.parametrize("case", CASES)
def test_settings_contain_profiles_rules_and_no_secret_values(helm, case):
    _, settings, _ = _settings_file(render(case))
    expected = values(case)["settings"]
    assert [p["name"] for p in settings["storage"]["profiles"]] == [
        p["name"] for p in expected["storage"]["profiles"]
    ]
    assert settings["rewrite"]["rules"] == expected["rewrite"]["rules"]
    assert secret_leaks(settings) == []
    assert settings["keystore"]["private_key"] == {"env": "STAC_PACKAGER_KEYSTORE_PRIVATE_KEY"}


def test_example_profiles_cover_every_backend(helm):
    urls = {
        case: [p["url"].split("://")[0] for p in _settings_file(render(case))[1]["storage"]["profiles"]]
        for case in CASES
    }
    assert "s3" in urls["values-s3-minio.yaml"]
    assert "swift" in urls["values-swift.yaml"]
    assert "webdav" in urls["values-webdav.yaml"]
    minio = _settings_file(render("values-s3-minio.yaml"))[1]["storage"]["profiles"][0]
    assert minio["endpoint"].startswith("http://") and minio["region"] and minio["allow_http"] is True


@pytest.mark.parametrize("case", CASES)
def test_env_from_existing_secrets(helm, case):
    v = values(case)
    c = container(render(case))
    env = env_map(c)
    for entry in v["secretEnv"]:
        ref = env[entry["name"]]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (entry["secretName"], entry["key"])
        assert "value" not in env[entry["name"]]
    assert [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e] == v["envFromSecrets"]
    # Every {env: NAME} in the settings is provided (by a secretKeyRef, a plain env var, or envFrom a Secret).
    _, settings, _ = _settings_file(render(case))
    missing = env_refs(settings) - set(env)
    assert not missing or v["envFromSecrets"], missing
    # The chart references Secrets; it never creates or embeds them.
    assert all(d["kind"] != "Secret" for d in render(case))


@pytest.mark.parametrize("case", CASES)
def test_dagster_container_context(helm, case):
    docs = render(case)
    v = values(case)
    c = container(docs)
    env = env_map(c)
    path, _, cm_name = _settings_file(docs)
    ctx = json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"])
    k8s = ctx["k8s"]
    assert k8s["namespace"] == NAMESPACE
    assert k8s["image_pull_policy"] == v["image"]["pullPolicy"]
    # Run pods get the same settings volume at the same path ...
    (vol,) = k8s["volumes"]
    assert vol["configMap"]["name"] == cm_name
    (mount,) = k8s["volume_mounts"]
    assert mount["name"] == vol["name"] and mount["mountPath"] == posixpath.dirname(path)
    # ... the same STAC_PACKAGER_CONFIG, secretKeyRefs and extra env (not the server-only variables) ...
    ctx_env = {e["name"]: e for e in k8s["env"]}
    assert ctx_env["STAC_PACKAGER_CONFIG"]["value"] == path
    for entry in v["secretEnv"]:
        assert ctx_env[entry["name"]] == env[entry["name"]]
    for entry in v["env"]:
        assert ctx_env[entry["name"]] == env[entry["name"]]
    assert not {"DAGSTER_HOME", "DAGSTER_CURRENT_IMAGE", "DAGSTER_CONTAINER_CONTEXT"} & set(ctx_env)
    # ... and the envFrom Secrets.
    assert k8s.get("env_secrets", []) == v["envFromSecrets"]
    run_cfg = v["includeConfigInLaunchedRuns"]
    assert k8s["labels"]["stac-packager/code-location"] == v["codeServer"]["locationName"]
    assert run_cfg["labels"].items() <= k8s["labels"].items()
    if run_cfg["resources"]:
        assert k8s["resources"] == run_cfg["resources"]
    if run_cfg["runK8sConfig"]:
        assert k8s["run_k8s_config"] == run_cfg["runK8sConfig"]
    assert "service_account_name" not in k8s  # runs keep the K8sRunLauncher's service account (RBAC)


@pytest.mark.parametrize("case", CASES)
def test_container_context_is_accepted_by_dagster_k8s(helm, case):
    """The JSON parses with dagster-k8s's own schema and yields the run pod's env/volumes."""
    container_context = pytest.importorskip("dagster_k8s.container_context")
    raw = json.loads(env_map(container(render(case)))["DAGSTER_CONTAINER_CONTEXT"]["value"])
    ctx = container_context.K8sContainerContext.create_from_config(raw)
    run = ctx.run_k8s_config
    names = {e["name"] for e in run.container_config["env"]}
    assert "STAC_PACKAGER_CONFIG" in names
    assert {e["name"] for e in values(case)["secretEnv"]} <= names
    assert run.container_config["volume_mounts"][0]["mount_path"] == "/etc/stac-packager"
    assert run.pod_spec_config["volumes"][0]["config_map"]["name"] == f"{RELEASE}-settings"


def test_container_context_can_be_disabled(helm):
    c = container(render("default", "--set", "includeConfigInLaunchedRuns.enabled=false"))
    assert "DAGSTER_CONTAINER_CONTEXT" not in env_map(c)


def test_settings_checksum_rolls_pods(helm):
    def checksum(*extra):
        pod = one(render("default", *extra), "Deployment")["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/settings"]

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum("--set", "settings.search.limit=7") != base
    assert checksum("--set", "replicaCount=3") == base


# ------------------------------------------------------------------------------------ rejected values


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "codeServer.port=notaport"], "at '/codeServer/port': got string, want integer"),
        (["--set", "image.tagg=1.0"], "additional properties 'tagg' not allowed"),
        (["--set", "nosuchkey=1"], "additional properties 'nosuchkey' not allowed"),
        (["--set", "codeServer.command=serve"], "/codeServer/command"),
        (["--set", "settings.keystore.private_key=hunter2"], "at '/settings/keystore/private_key'"),
        (
            [
                "-f",
                str(EXAMPLES_DIR / "values-s3-minio.yaml"),
                "--set",
                "settings.storage.profiles[0].secret_access_key=plaintext",
            ],
            "/settings/storage/profiles/0/secret_access_key",
        ),
        (["--set", "secretEnv=null"], "settings reference env vars STAC_PACKAGER_KEYSTORE_PRIVATE_KEY"),
    ],
    ids=[
        "string-port",
        "unknown-image-key",
        "unknown-top-key",
        "bad-command",
        "plain-secret",
        "plain-profile-secret",
        "unprovided-env-ref",
    ],
)
def test_bad_values_are_rejected(helm, args, message):
    proc = _run_helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *args)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


def test_schema_has_no_remote_refs():
    text = (CHART / "values.schema.json").read_text()
    schema = json.loads(text)
    refs = re.findall(r'"\$ref":\s*"([^"]+)"', text)
    assert refs and all(r.startswith("#/") for r in refs), refs
    assert schema["additionalProperties"] is False


# ------------------------------------------------------------------- the official dagster chart's values


def test_dagster_values_workspace_points_at_our_service(helm):
    dv = yaml.safe_load(DAGSTER_VALUES.read_text())
    docs = render("default")
    svc = one(docs, "Service")
    v = values("default")["codeServer"]
    assert dv["dagsterWebserver"]["workspace"]["enabled"] is True
    (server,) = dv["dagsterWebserver"]["workspace"]["servers"]
    assert server == {
        "host": svc["metadata"]["name"],
        "port": svc["spec"]["ports"][0]["port"],
        "name": v["locationName"],
    }
    # Every example keeps the same Service name/port/location, so one workspace entry fits all of them.
    for case in CASES:
        s = one(render(case), "Service")
        if case == "values-webdav.yaml":  # documents a non-default port
            assert s["spec"]["ports"][0]["port"] == values(case)["codeServer"]["port"] == 4000
            continue
        assert (s["metadata"]["name"], s["spec"]["ports"][0]["port"]) == (server["host"], server["port"])


def test_dagster_values_run_launcher_queue_and_postgres():
    dv = yaml.safe_load(DAGSTER_VALUES.read_text())
    assert dv["dagster-user-deployments"] == {"enabled": True, "enableSubchart": False}
    assert dv["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in dv["runLauncher"]["config"]
    assert "k8s_job_executor" in DAGSTER_VALUES.read_text()
    # Run queue: tag limits for backfills and for each backend tag value.
    conc = dv["concurrency"]
    assert conc["enabled"] is True
    limits = conc["runs"]["tagConcurrencyLimits"]
    assert any(lim["key"] == "dagster/backfill" for lim in limits)
    store_values = {lim.get("value") for lim in limits if lim["key"] == "stac-packager/store"}
    assert store_values == {"s3", "swift", "webdav", "stac-api"}
    assert all(isinstance(lim["limit"], int) and lim["limit"] > 0 for lim in limits)
    # Gotcha: never set run limits both in `concurrency` and in the legacy queued run coordinator config.
    qrc = dv["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert "maxConcurrentRuns" not in qrc and "tagConcurrencyLimits" not in qrc
    # External Postgres, password from an existing Secret, explicit psycopg2 scheme.
    pg = dv["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]
    assert not pg.get("postgresqlPassword")
    assert dv["generatePostgresqlPasswordSecret"] is False
    assert dv["global"]["postgresqlSecretName"]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert dv["global"]["dagsterHome"] == values("default")["dagsterHome"]


# ------------------------------------------------------------------------------------------ Dockerfile


def _dockerfile() -> tuple[str, list[str]]:
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return text, [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_cmd_matches_chart():
    _, lines = _dockerfile()
    (cmd,) = [ln for ln in lines if ln.startswith("CMD ")]
    argv = json.loads(cmd[len("CMD ") :])
    assert not [ln for ln in lines if ln.startswith("ENTRYPOINT")]
    v = values("default")
    assert argv[:3] == ["dagster", "code-server", "start"]
    opts = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert opts["-m"] == v["codeServer"]["module"]
    assert opts["--location-name"] == v["codeServer"]["locationName"]
    assert opts["-p"] == str(v["codeServer"]["port"])
    # The chart's args are the same command line.
    chart_args = container(render("default"))["args"] if HELM.exists() else None
    if chart_args:
        assert chart_args[: len(argv)] == argv


def test_dockerfile_base_user_and_drivers():
    text, lines = _dockerfile()
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert arg and arg.group(1) == "python:3.11-slim"
    assert all(f in ("${PYTHON_IMAGE}", "python:3.11-slim") for f in froms)
    install = " ".join(ln for ln in lines if ln.startswith("RUN pip install"))
    assert "pip install ." in install
    assert "psycopg2-binary" in install and "psycopg[binary]" in install
    (user,) = [ln for ln in lines if ln.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid not in ("root", "0")
    uid_default = re.search(r"^ARG UID=(\d+)", text, re.M)
    assert (
        uid == "${UID}"
        and uid_default
        and int(uid_default.group(1)) == values("default")["podSecurityContext"]["runAsUser"]
    )
    dagster_home = re.search(r"DAGSTER_HOME=(\S+)", text)
    assert dagster_home and dagster_home.group(1) == values("default")["dagsterHome"]


def test_dockerignore_keeps_context_small():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in lines  # allow-list
    assert {"!pyproject.toml", "!README.md", "!packager/", "!pipelines/", "!resources/"} <= set(lines)
    assert not any(ln.startswith("!.venv") or ln.startswith("!.git") for ln in lines)


def test_get_helm_script_is_idempotent(helm):
    proc = subprocess.run(
        ["bash", "scripts/get-helm.sh"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "already installed" in proc.stdout, shlex.quote(proc.stdout)


@pytest.mark.parametrize("case", CASES)
def test_rendered_settings_are_accepted_by_the_code(helm, case, tmp_path, monkeypatch):
    """What the chart mounts loads through the code's own settings and storage-profile models."""
    from pipelines.settings import build_resources, load_settings

    _, settings, _ = _settings_file(render(case))
    for name in env_refs(settings):
        monkeypatch.setenv(name, f"value-of-{name}")
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    import dagster as dg

    with dg.build_resources(build_resources(load_settings(path))) as resolved:
        profiles = resolved.storage.profiles
    assert [p.name for p in profiles] == [p["name"] for p in settings.get("storage", {}).get("profiles", [])]
    for profile in profiles:
        profile.to_engine()  # field names and values valid for the engine's StorageProfile
