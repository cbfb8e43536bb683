# syntax=docker/dockerfile:1
# stac-packager user-code image: the Dagster code server of the Helm chart (helm/stac-packager) and the
# image of every run/step pod the K8sRunLauncher starts for this code location.
#
#   docker build -t registry.example.com/geo/stac-packager:$(git rev-parse --short HEAD) .

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the project and its runtime extras into a venv --------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY packager ./packager
COPY resources ./resources
COPY pipelines ./pipelines
# - dagster-k8s: k8s_job_executor (one pod per step) and K8s container contexts; pinned with dagster 1.13.27.
# - psycopg2-binary AND psycopg[binary]: run pods write to the instance's Postgres through dagster-postgres;
#   SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3, and the dagster chart renders postgres_db
#   without `scheme` (dagster-io/dagster#33958), so ship both drivers.
RUN pip install . \
        "dagster-k8s==0.29.27" \
        "psycopg2-binary==2.9.13" \
        "psycopg[binary]==3.3.9" \
 && python -c "import dagster, dagster_k8s, dagster_postgres, psycopg, psycopg2, pipelines, packager"

# ---- runtime ----------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="stac-packager" \
      org.opencontainers.image.description="Dagster code location stac_packager: STAC search -> verifiable, relocatable package" \
      org.opencontainers.image.licenses="Apache-2.0"

ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid ${GID} stac \
 && useradd --system --uid ${UID} --gid stac --home-dir /home/stac --create-home --shell /usr/sbin/nologin stac

COPY --from=build /opt/venv /opt/venv

# DAGSTER_HOME must match the dagster chart's global.dagsterHome: run pods get the instance ConfigMap
# (dagster.yaml) mounted there. The code-server pod mounts an emptyDir on it (readOnlyRootFilesystem).
ENV PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    HOME=/home/stac
RUN mkdir -p ${DAGSTER_HOME} /opt/dagster/app \
 && chown -R ${UID}:${GID} ${DAGSTER_HOME} /opt/dagster/app
WORKDIR /opt/dagster/app

USER ${UID}:${GID}
EXPOSE 3030

# Same command line as the Helm chart's Deployment (codeServer.module / locationName / port).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "pipelines.definitions", "--location-name", "stac_packager"]
