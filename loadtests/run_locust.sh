#!/usr/bin/env bash
# Headless locust run against a local vin-gateway that this script starts and stops itself.
#
#   loadtests/run_locust.sh [extra locust arguments, e.g. --scrapers 2 --p95-ms 300]
#
# Environment: USERS (50), SPAWN_RATE (10), DURATION (60s; s/m/h suffix), WORKERS (1),
# REDIS_URL (redis://127.0.0.1:6379/12, flushed first), CSV (loadtests/results/run).
# Traffic goes to 127.0.0.1 only. Exit code: locust's (see the quitting hook in locustfile.py).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
USERS=${USERS:-50}
SPAWN_RATE=${SPAWN_RATE:-10}
DURATION=${DURATION:-60s}
WORKERS=${WORKERS:-1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/12}
CSV=${CSV:-loadtests/results/run}

case "$DURATION" in
  *h) seconds=$(( ${DURATION%h} * 3600 )) ;;
  *m) seconds=$(( ${DURATION%m} * 60 )) ;;
  *s) seconds=${DURATION%s} ;;
  *) seconds=$DURATION ;;
esac

"$PY" -c "import redis, sys; redis.Redis.from_url(sys.argv[1]).flushdb()" "$REDIS_URL" || {
  echo "run_locust: Redis at $REDIS_URL is not reachable" >&2
  exit 2
}

WORK=$(mktemp -d -t vingw-locust-XXXXXX)
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
HOST=http://127.0.0.1:$PORT

# Every simulated workshop registers and logs in from 127.0.0.1, so the per-IP limit of the
# unauthenticated endpoints (burst 20, 0.2/s by default) is raised for the run; the per-account
# VIN limits stay at their defaults.
env -u VINGW_LIMIT_VIN_BURST -u VINGW_LIMIT_VIN_PER_S \
  VINGW_REDIS_URL="$REDIS_URL" \
  VINGW_DATA_DIR="$WORK/var" \
  VINGW_ARGON2_TIME_COST=1 \
  VINGW_ARGON2_MEMORY_KIB=1024 \
  VINGW_ACCESS_LOG_LEVEL=WARNING \
  VINGW_LIMIT_IP_BURST=10000 \
  VINGW_LIMIT_IP_PER_S=1000 \
  .venv/bin/vin-gateway serve --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!

stop_server() {
  if kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER" 2>/dev/null
  fi
  wait "$SERVER" 2>/dev/null
  errors=$(grep -cE "Traceback|ERROR|CRITICAL" "$WORK/server.log")
  echo "run_locust: server log: $errors error line(s)" >&2
  if [ "$errors" -gt 0 ]; then
    mkdir -p "$(dirname "$CSV")"
    cp "$WORK/server.log" "$CSV-server.log"
    grep -E "Traceback|ERROR|CRITICAL" "$WORK/server.log" | sort | uniq -c | sort -rn | head -5 >&2
    echo "run_locust: server log kept in $CSV-server.log" >&2
  fi
  rm -rf "$WORK"
}
trap stop_server EXIT

for _ in $(seq 150); do
  if curl -fsS "$HOST/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "run_locust: vin-gateway exited early:" >&2
    cat "$WORK/server.log" >&2
    exit 2
  fi
  sleep 0.2
done

mkdir -p "$(dirname "$CSV")"
echo "run_locust: $USERS users, spawn rate $SPAWN_RATE/s, $DURATION, $WORKERS worker(s), $HOST" >&2
timeout --signal=INT --kill-after=30 $(( seconds + 60 )) \
  .venv/bin/locust -f loadtests/locustfile.py --headless \
  -u "$USERS" -r "$SPAWN_RATE" -t "$DURATION" --stop-timeout 5 \
  --csv "$CSV" --only-summary --host "$HOST" "$@"
rc=$?
echo "run_locust: locust exit code $rc" >&2
exit $rc
