#!/usr/bin/env bash
# The README's test command: set up what is missing, then lint and run every test
# against the real PostgreSQL, RabbitMQ and Redis (each run in its own database,
# vhost and key prefix). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh --dev
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
