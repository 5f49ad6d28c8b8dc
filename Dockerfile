# syntax=docker/dockerfile:1
# The one image of every opscenter process: `docker run IMAGE worker|web|migrate|simulate`.
# Production topology: docker-compose.yml (root) and deploy/k8s/. Runbook: deploy/README.md.

# --- build: a virtualenv with the project and its dependencies ----------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# a compiler only for dependencies that ship no wheel for this platform; not in the final image
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/opscenter
ENV PATH=/opt/opscenter/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install --upgrade pip \
 && pip install . \
 && opscenter --help >/dev/null

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="weihai-opscenter" \
      org.opencontainers.image.description="威海市市级政务云 运行监控指挥中心 / Weihai government cloud operations control center"
ARG APP_UID=10001
ENV PATH=/opt/opscenter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPSCENTER_DATA_DIR=/var/lib/opscenter \
    OPSCENTER_HOST=0.0.0.0
RUN groupadd --system --gid "${APP_UID}" opscenter \
 && useradd --system --uid "${APP_UID}" --gid opscenter \
        --home-dir /var/lib/opscenter --no-create-home --shell /usr/sbin/nologin opscenter \
 && install -d -o opscenter -g opscenter -m 0750 /var/lib/opscenter
COPY --from=build /opt/opscenter /opt/opscenter
COPY deploy/docker/healthcheck.py /usr/local/bin/opscenter-healthcheck
RUN chmod 0755 /usr/local/bin/opscenter-healthcheck \
 && sed -i '1s|.*|#!/opt/opscenter/bin/python|' /usr/local/bin/opscenter-healthcheck

USER opscenter
WORKDIR /var/lib/opscenter
# web app (OPSCENTER_WEB_PORT) and the worker's health/metrics port (OPSCENTER_WORKER_WEB_PORT)
EXPOSE 8080 6066
# picks the port from PID 1's subcommand (web 8080, worker 6066; migrate is always healthy)
HEALTHCHECK --interval=15s --timeout=6s --start-period=60s --retries=3 \
    CMD ["opscenter-healthcheck"]
ENTRYPOINT ["opscenter"]
CMD ["web"]
