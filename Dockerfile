# The inferline gateway image: `inferline serve --config /etc/inferline/inferline.yaml`.
# Checked without a container engine: hadolint (tests/deploy/test_dockerfile.py), and the same install
# steps run outside a container by scripts/deploy/image-install-check.sh (fresh venv, then `inferline --help`).
# No HEALTHCHECK: Kubernetes probes /health (see deploy/helm/inferline).

# -- build: a virtualenv with inferline and its dependencies (prebuilt wheels), and the gateway's hot path
# compiled with mypyc (src/inferline/hot_path.py: ~25% less CPU per request). The C compiler and mypy stay
# in this stage; the final stage gets the built venv only.
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Not pinned: Debian's point releases replace these versions, and any gcc builds the same C here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY scripts/compile-hot-path.py ./scripts/
# the image-install-check script runs exactly these commands
RUN python -m venv /opt/inferline \
    && /opt/inferline/bin/pip install --only-binary=:all: --no-binary=inferline . \
    && /opt/inferline/bin/pip install --only-binary=:all: mypy==2.4.1 types-PyYAML==6.0.12.20261122 \
    && /opt/inferline/bin/python scripts/compile-hot-path.py --require \
       --install-into /opt/inferline/lib/python3.11/site-packages \
    && /opt/inferline/bin/pip uninstall -y mypy types-PyYAML

# -- final: the venv on a clean slim base, run as an unprivileged user -----------------------------------------
FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="inferline" \
      org.opencontainers.image.description="OpenAI-compatible LLM gateway in front of vLLM and llama.cpp engines" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/inferline/inferline"
RUN groupadd --system --gid 10001 inferline \
    && useradd --system --uid 10001 --gid inferline --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin inferline
COPY --from=build /opt/inferline /opt/inferline
ENV PATH=/opt/inferline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["inferline", "serve"]
CMD ["--config", "/etc/inferline/inferline.yaml"]
