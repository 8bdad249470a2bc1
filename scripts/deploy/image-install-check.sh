#!/usr/bin/env bash
# The Dockerfile's install steps, run outside a container (no container engine here): copy what the image
# copies (pyproject.toml, README.md, src/, the compile script), create /opt/inferline's venv in a temp dir
# with the same commands (prebuilt wheels; the hot path compiled with mypyc and gcc, as in the build
# stage), then run the entrypoint's command and check that the installed gateway runs the compiled build.
# Usage: scripts/deploy/image-install-check.sh [PYTHON]   (default python3; the image uses Python 3.11)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${1:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp pyproject.toml README.md "$work/src/"
cp -r src "$work/src/src"
mkdir -p "$work/src/scripts" && cp scripts/compile-hot-path.py "$work/src/scripts/"
# the image's build context has no local build (.dockerignore leaves it out)
find "$work/src" -name '__pycache__' -prune -exec rm -rf {} + -o -name '*.egg-info' -prune -exec rm -rf {} +
find "$work/src/src" \( -name '*.so' -o -name '.hot_path.json' \) -delete
start=$(date +%s)
# pip's download cache is kept here (it is outside the venv: what gets installed is the same)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# --- the Dockerfile's RUN line, with /opt/inferline -> $work/venv ---
site=$("$PY" -c 'import sys; print(f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages")')
(cd "$work/src" && "$PY" -m venv "$work/venv" \
  && "$work/venv/bin/pip" install -q --only-binary=:all: --no-binary=inferline . \
  && "$work/venv/bin/pip" install -q --only-binary=:all: mypy==2.4.1 types-PyYAML==6.0.12.20261122 \
  && "$work/venv/bin/python" scripts/compile-hot-path.py --require --install-into "$work/venv/$site" >/dev/null \
  && "$work/venv/bin/pip" uninstall -q -y mypy types-PyYAML)
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
# the installed gateway runs the compiled hot path, without mypy (removed above) and away from the sources
mode=$(cd / && "$work/venv/bin/python" -c 'import inferline.gateway.app, inferline.hot_path as h; print(h.mode)')
[[ "$mode" == "compiled" ]] || { echo "image-install-check: hot path is $mode, not compiled" >&2; exit 1; }
echo "image-install-check: OK in $(( $(date +%s) - start ))s ($("$work/venv/bin/python" --version), $(du -sh "$work/venv" | cut -f1) venv)"
