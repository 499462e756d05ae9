#!/usr/bin/env bash
# The README's test command: set up what is missing, then lint and run every test
# against the real PostgreSQL, RabbitMQ and Redis (each run in its own database,
# vhost and key prefix). Extra arguments go to pytest.
#
#   scripts/test.sh                  everything, as CI runs it
#   scripts/test.sh --quick [args]   the inner loop: no set-up, lint and types, then tests/unit (or the pytest args)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--quick" ]]; then
  shift
  .venv/bin/ruff format --check --quiet .
  .venv/bin/ruff check --quiet .
  contracts=$(.venv/bin/lint-imports --no-cache 2>&1) || { echo "$contracts"; exit 1; }
  [[ -x .venv/bin/mypy ]] || { echo "mypy is not in .venv: run scripts/bootstrap.sh --dev"; exit 1; }
  types=$(.venv/bin/mypy 2>&1) || { echo "$types"; exit 1; }
  exec .venv/bin/python -m pytest -p no:cacheprovider -q "${@:-tests/unit}"
fi
bash scripts/bootstrap.sh --dev
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
