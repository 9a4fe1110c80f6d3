# syntax=docker/dockerfile:1
# One image for every role: ENTRYPOINT is `tradepulse`, the command (worker, persist, api,
# db migrate, demo, ...) comes from compose or Kubernetes.
#
#   docker build -t tradepulse:0.1.0 .
#   docker run --rm tradepulse:0.1.0 --help

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the wheel of the project, then a virtual environment with it and its deps --
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /dist/*.whl

# --- runtime: the virtual environment only; no compiler, no build files, not root ------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tradepulse" \
      org.opencontainers.image.description="Real-time trade analytics: exact sliding-window statistics, bars, indicators and alerts." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADEPULSE_HTTP_HOST=0.0.0.0 \
    TRADEPULSE_HTTP_PORT=9100
RUN groupadd --system --gid 10001 tradepulse \
 && useradd --system --uid 10001 --gid tradepulse --home-dir /app --shell /usr/sbin/nologin tradepulse \
 && mkdir -p /app && chown tradepulse:tradepulse /app
COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /usr/local/bin/tradepulse-healthcheck
WORKDIR /app
USER 10001:10001
EXPOSE 9100 8000
# Worker: its operations port; the api (port 8000) and the persister (--process) override it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "/usr/local/bin/tradepulse-healthcheck"]
ENTRYPOINT ["tradepulse"]
CMD ["--help"]
