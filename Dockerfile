# syntax=docker/dockerfile:1
#
# points-ledger: a slim two-stage image built with uv.
#
#   docker build -t points-ledger:0.1.0 .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=postgresql://... points-ledger:0.1.0
#
# The entrypoint is the `points-ledger` command, so the same image runs
# `serve` (the default), `migrate` and `verify` (see docs/operations.md).

ARG PYTHON_VERSION=3.11

# --- build: resolve the locked dependencies into /app/.venv -------------------
FROM python:${PYTHON_VERSION}-slim AS build

RUN pip install --no-cache-dir uv==0.13.9

# Use the image's Python (never download one), copy files out of uv's cache
# (the cache is a build mount), and compile bytecode now: the runtime root
# filesystem is read-only.
ENV UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first, in their own layer: it changes only when uv.lock does.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-project

# Then the project itself. It is installed in uv's default editable mode on
# purpose: the service finds sql/ next to the `service` package (service/db.py,
# sql_dir()), and the wheel holds only `service/`, so both stay in /app.
COPY pyproject.toml uv.lock README.md ./
COPY service ./service
COPY sql ./sql
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev \
 && python -m compileall -q service

# --- runtime -------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 ledger \
 && useradd --system --uid 10001 --gid ledger --home-dir /home/ledger --create-home \
            --shell /usr/sbin/nologin ledger \
 && mkdir -p /data \
 && chown ledger:ledger /data

# The code and the virtualenv stay owned by root: the service only reads them.
COPY --from=build /app /app

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEDGER_DATA_DIR=/data/pg

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Without DATABASE_URL the service starts the embedded PostgreSQL in
# LEDGER_DATA_DIR (/data/pg, writable by the ledger user): fine for a demo,
#   docker run --rm -p 8000:8000 -e LEDGER_ADMIN_KEY=dev-admin-key \
#       points-ledger:0.1.0 serve --host 0.0.0.0 --demo
# never for production.
ENTRYPOINT ["points-ledger"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
