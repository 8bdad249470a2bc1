#!/usr/bin/env bash
# The Dockerfile's install steps, run outside a container (no container engine here): copy what the image
# copies (pyproject.toml, README.md, src/), create /opt/inferline's venv in a temp dir with the same pip
# command (prebuilt wheels only, so the image needs no compiler), then run the entrypoint's command.
# Usage: scripts/deploy/image-install-check.sh [PYTHON]   (default python3; the image uses Python 3.11)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp pyproject.toml README.md "$work/src/"
cp -r src "$work/src/src"
find "$work/src" -name '__pycache__' -prune -exec rm -rf {} + -o -name '*.egg-info' -prune -exec rm -rf {} +
start=$(date +%s)
# pip's download cache is kept here (it is outside the venv: what gets installed is the same)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# --- the Dockerfile's RUN line, with /opt/inferline -> $work/venv ---
(cd "$work/src" && "$PY" -m venv "$work/venv" \
  && "$work/venv/bin/pip" install -q --only-binary=:all: --no-binary=inferline .)
# --- the entrypoint ---
"$work/venv/bin/inferline" --help >/dev/null
help=$("$work/venv/bin/inferline" serve --help)
[[ "$help" == *"--config"* ]] || { echo "image-install-check: inferline serve has no --config" >&2; exit 1; }
cat > "$work/inferline.yaml" <<'YAML'
limits: {require_api_key: false}
models:
  - name: llama-8b
    discovery: {dns_name: inferline-llama-8b-engine.inference.svc.cluster.local, port: 8000}
YAML
"$work/venv/bin/inferline" config check "$work/inferline.yaml"
echo "image-install-check: OK in $(( $(date +%s) - start ))s ($("$work/venv/bin/python" --version), $(du -sh "$work/venv" | cut -f1) venv)"
