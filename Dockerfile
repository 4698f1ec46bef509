# vin-gateway: the service on embedded defaults (SQLite files and generated secrets in /data).
# For production set VINGW_REDIS_URL, VINGW_DATABASE_URL and VINGW_LOG_DATABASE_URL (two
# different PostgreSQL databases), run `vin-gateway migrate` once, then start with more workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VINGW_DATA_DIR=/data

RUN useradd --create-home --uid 10001 gateway
WORKDIR /app
COPY pyproject.toml README.md ./
COPY vin ./vin
COPY gateway ./gateway
RUN pip install --no-cache-dir . && mkdir /data && chown gateway /data

USER gateway
VOLUME ["/data"]
EXPOSE 8000
CMD ["vin-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
