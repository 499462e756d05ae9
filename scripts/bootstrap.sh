#!/usr/bin/env bash
# Prepare a fresh machine: local PostgreSQL, Redis and RabbitMQ up, a virtualenv with
# Gatekeeper installed. Safe to run again; it only does what is missing.
# Usage: scripts/bootstrap.sh [--dev]   (--dev adds the test tools, the JS test client and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # wait_port PORT NAME SECONDS
  for _ in $(seq 1 "$3"); do tcp_open "$1" && return 0; sleep 1; done
  log "$2 did not come up on port $1"; return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing $*; install them (e.g. apt-get install $*) and run again"; exit 1
  fi
  log "installing $* with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_services() {
  if ! tcp_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
    wait_port 5432 PostgreSQL 60
  fi
  if ! tcp_open 6379; then
    command -v redis-server >/dev/null || apt_install redis-server
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_port 6379 Redis 30
  fi
  if ! tcp_open 5672; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    log "starting RabbitMQ"
    rabbitmq-server -detached || true
    wait_port 5672 RabbitMQ 120
  fi
  # RabbitMQ opens its port a little before it accepts logins.
  for _ in $(seq 1 60); do rabbitmq-diagnostics -q check_running >/dev/null 2>&1 && break; sleep 1; done
  ensure_rabbitmq_management
}

# The HTTP API python -m scripts.status reads rates and message ages from (port 15672).
# Only for a local broker we administer as root; anything else just goes without it.
ensure_rabbitmq_management() {
  [ "$(id -u)" = 0 ] && command -v rabbitmq-plugins >/dev/null || return 0
  if ! rabbitmq-plugins -q list -e -m rabbitmq_management 2>/dev/null | grep -qx rabbitmq_management; then
    log "enabling the RabbitMQ management plugin"
    rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 || { log "could not enable rabbitmq_management (scripts.status falls back to rabbitmqctl)"; return 0; }
  fi
  wait_port 15672 "RabbitMQ management" 60 || true
}

ensure_venv() {
  local extras="$1"
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  local stamp=".venv/.installed${extras}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing gatekeeper${extras} into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${extras}"
    touch "$stamp"
  fi
}

ensure_js_client() {
  command -v npm >/dev/null || apt_install nodejs npm
  if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
    log "installing the socket.io-client test client (npm ci)"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

# The browser tests drive Debian's Chromium through Playwright; never `playwright install`.
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

ensure_services
if [ "${1:-}" = "--dev" ]; then
  ensure_venv "[dev]"
  ensure_js_client
  ensure_chromium
else
  ensure_venv ""
fi
log "ready"
