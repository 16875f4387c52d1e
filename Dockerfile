# Production image of a PeerSpark RT node.
#   docker build -t peerspark-rt .
#   docker run -p 8080:8080 -e DATABASE_URL=... -e REDIS_URL=... \
#     -e JWT_SECRET=... -e JWT_REFRESH_SECRET=... peerspark-rt
# docker-compose.yml runs two of them behind nginx with PostgreSQL, Redis and MinIO.

# --- build: the virtualenv, with the pinned dependencies -----------------------------------
FROM python:3.11-slim AS build
# a C compiler for the fan-out's send loop (peerspark_rt/actors/_fanout.c; only this stage)
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY peerspark_rt ./peerspark_rt
COPY bench ./bench
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

# --- run: the virtualenv and the files the node reads, as an unprivileged user -------------
FROM python:3.11-slim
RUN groupadd --system --gid 1001 peerspark \
 && useradd --system --uid 1001 --gid peerspark --home /app --shell /usr/sbin/nologin peerspark
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY schema.sql ./schema.sql
COPY config ./config
COPY web ./web
# Behind a proxy that appends X-Forwarded-For (the shipped config/nginx.conf does, and
# docker-compose.yml sets it), run with -e TRUST_PROXY_HEADERS=true; without one, the header is
# the client's own word, so it is ignored by default.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PEERSPARK_ENV=production \
    PEERSPARK_DATA_DIR=/app/data \
    HOST=0.0.0.0 \
    PORT=8080 \
    TRUST_PROXY_HEADERS=false
RUN mkdir -p /app/data && chown peerspark:peerspark /app/data
USER peerspark:peerspark
EXPOSE 8080
# SIGTERM drains the node (stop accepting, finish what is in flight, close websockets with
# 1001 "restart: reconnect") and exits within SHUTDOWN_TIMEOUT (25 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8080')}/health\", timeout=2).status != 200)"]
CMD ["python", "-m", "peerspark_rt", "serve"]
