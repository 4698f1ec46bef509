# vin-gateway. Build: docker build -t vin-gateway .   Run: docker run -p 8000:8000 -v vingw:/data vin-gateway
#
# Embedded defaults (SQLite files and generated secrets in /data, the in-process stand-in for
# Redis) unless configured. Production: set VINGW_REDIS_URL, VINGW_DATABASE_URL and
# VINGW_LOG_DATABASE_URL (two different PostgreSQL databases), run `vin-gateway migrate` once
# (a one-off container with the same image), mount the same secrets directory in every replica
# (VINGW_DATA_DIR/secrets, or VINGW_PSEUDONYM_KEYS_FILE and VINGW_TOKEN_SIGNING_KEY), and
# behind a reverse proxy set VINGW_TRUSTED_PROXIES to the proxy's addresses (IPs or CIDRs):
# only then is X-Forwarded-For believed, and the proxy must overwrite that header, never append
# a client's own. Unset (the default), the TCP peer is the client.
#
# The install steps are the ones tests/packaging runs on every CI run: the runtime lock with
# hashes required, then the wheel of this tree without dependencies.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements/runtime.txt requirements/runtime.txt
RUN python -m venv /opt/vin-gateway \
 && /opt/vin-gateway/bin/pip install --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md LICENSE ./
COPY vin ./vin
COPY gateway ./gateway
RUN /opt/vin-gateway/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/vin-gateway/bin/pip install --no-deps /wheels/vin_gateway-*.whl

FROM python:3.11-slim
ENV PATH=/opt/vin-gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VINGW_DATA_DIR=/data
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gateway \
 && mkdir -m 0700 /data && chown gateway /data
COPY --from=build /opt/vin-gateway /opt/vin-gateway
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["vin-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
