#!/usr/bin/env bash
# The README's first command: set up a fresh machine and run the whole system locally
# (two ingress nodes and a chat worker pool) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ ! -f .env ]; then
  echo "[up] writing .env from .env.example with fresh random secrets (and dev tokens on: local use only)"
  sed -e "s|^JWT_SECRET=.*|JWT_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')|" \
      -e "s|^ADMIN_TOKEN=.*|ADMIN_TOKEN=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')|" \
      -e "s|^LOG_FORMAT=.*|LOG_FORMAT=console|" \
      -e "s|^ALLOW_DEV_TOKENS=.*|ALLOW_DEV_TOKENS=1|" \
      .env.example > .env
fi
exec .venv/bin/python -m scripts.up "$@"
