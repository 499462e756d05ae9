#!/usr/bin/env bash
# Rebuild infra/contracts/BEZ.json (the committed ABI + bytecode) from BEZ.sol with the npm solc
# compiler pinned in package.json / package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
node build.js
