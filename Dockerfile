# Production image of a PeerSpark RT node.
# docker build -t peerspark-rt . && docker run -p 8080:8080 -e DATABASE_URL=... -e REDIS_URL=... \
#   -e JWT_SECRET=... -e JWT_REFRESH_SECRET=... peerspark-rt
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY peerspark_rt ./peerspark_rt
COPY bench ./bench
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
RUN groupadd --system --gid 1001 peerspark \
 && useradd --system --uid 1001 --gid peerspark --home /app peerspark
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY schema.sql ./schema.sql
COPY config ./config
COPY web ./web
ENV PATH=/opt/venv/bin:$PATH \
    PEERSPARK_ENV=production \
    PEERSPARK_DATA_DIR=/app/data \
    HOST=0.0.0.0 \
    PORT=8080
# Behind a proxy that appends X-Forwarded-For (the shipped config/nginx.conf does), run with
# -e TRUST_PROXY_HEADERS=true; without one, the header is the client's own word and ignored.
RUN mkdir -p /app/data && chown peerspark:peerspark /app/data
USER peerspark
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health').status != 200)"
CMD ["python", "-m", "peerspark_rt", "serve"]
