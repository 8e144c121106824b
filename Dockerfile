# syntax=docker/dockerfile:1
# One image for the three services; SELFCARE_SERVICE picks which one a container runs:
#   docker build -t selfcare-access:0.1.0 .
#   docker run -e SELFCARE_SERVICE=recovery ... selfcare-access:0.1.0
# The base is pinned by tag (python:3.11-slim-bookworm); pin it by digest in your registry
# mirror (`FROM python:3.11-slim-bookworm@sha256:...`) for byte-for-byte rebuilds.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the pinned dependencies, then the project without dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# deploy/requirements.txt is pyproject.toml's [project] dependencies (a test keeps them equal)
COPY deploy/requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY pyproject.toml /src/
COPY schemas /src/schemas
COPY services /src/services
COPY deploy /src/deploy
RUN /opt/venv/bin/pip install --no-deps /src

# ---- run: the virtualenv only, as an unprivileged user
FROM ${PYTHON_IMAGE}
ARG SELFCARE_SERVICE=recovery
ENV SELFCARE_SERVICE=${SELFCARE_SERVICE} \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SELFCARE_VAR_DIR=/var/lib/selfcare \
    WEB_BIND_HOST=0.0.0.0
RUN groupadd --system --gid 10001 selfcare \
    && useradd --system --uid 10001 --gid selfcare --home-dir /var/lib/selfcare --shell /usr/sbin/nologin selfcare \
    && install -d -o selfcare -g selfcare -m 0700 /var/lib/selfcare
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/selfcare
EXPOSE 6101 6102 6103
# /livez on the service's web port (REGISTRATION_WEB_PORT / RECOVERY_WEB_PORT / NOTIFIER_WEB_PORT)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,urllib.request as u; s=os.environ['SELFCARE_SERVICE']; p=os.environ.get(s.upper()+'_WEB_PORT') or {'registration':'6101','recovery':'6102','notifier':'6103'}[s]; u.urlopen('http://127.0.0.1:'+p+'/livez', timeout=4)"]
CMD ["/bin/sh", "-c", "exec python -m \"services.${SELFCARE_SERVICE}\" worker"]
