# Gatekeeper: one image for every role. The default command runs an ingress node;
# compose.yaml overrides it for workers (python -m workers --queues chat ...).
#
#   docker build -t gatekeeper .
#   docker run --rm -p 8080:8080 -e JWT_SECRET=... -e ADMIN_TOKEN=... -e DATABASE_URL=... gatekeeper
#
# No HEALTHCHECK here on purpose: compose.yaml defines one per role.

ARG PYTHON_VERSION=3.11

# --- build: a virtualenv holding the app and its runtime dependencies -------------
FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The venv gets no pip of its own; the base image's pip installs into it (--python).
RUN python -m venv --without-pip /opt/venv

WORKDIR /src

# Dependencies first, read from pyproject.toml, so that editing the code reuses this layer.
# --only-binary: every dependency ships wheels (asyncpg, nh3, pydantic-core, ...), so no
# compiler is ever needed; a missing wheel fails the build loudly instead.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip --python /opt/venv/bin/python install --only-binary=:all: -r /tmp/requirements.txt

# Then the project itself (no dev extras), built from source by setuptools.
COPY . .
RUN pip --python /opt/venv/bin/python install --no-deps . \
 && /opt/venv/bin/python -c "import ingress, workers, domain, schemas, infra"

# --- runtime: the venv only, run as an unprivileged user -------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime

LABEL org.opencontainers.image.title="gatekeeper" \
      org.opencontainers.image.description="Gatekeeper ingress nodes and dramatiq workers"

RUN groupadd --system --gid 10001 gatekeeper \
 && useradd --system --uid 10001 --gid gatekeeper --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin gatekeeper

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080

# An empty working directory: the code is imported from the venv, and Settings finds no
# stray .env here unless one is mounted on purpose.
WORKDIR /app
USER 10001:10001

EXPOSE 8080
CMD ["python", "-m", "ingress", "--host", "0.0.0.0", "--port", "8080"]
