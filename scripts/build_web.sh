#!/usr/bin/env bash
# Rebuild the web pages' vendored third-party code: the browser (ESM) build of socket.io-client,
# pinned by web/package.json + web/package-lock.json, copied into ingress/web/vendor/ (committed,
# so running Gatekeeper needs no Node toolchain). Our own pages are plain ES modules: nothing to build.
# Usage: scripts/build_web.sh
set -euo pipefail
cd "$(dirname "$0")/.."

command -v npm >/dev/null || { echo "build_web: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
npm ci --prefix web --no-audit --no-fund --loglevel=error >/dev/null
mkdir -p ingress/web/vendor
for f in socket.io.esm.min.js socket.io.esm.min.js.map; do
  cp "web/node_modules/socket.io-client/dist/$f" "ingress/web/vendor/$f"
done
version=$(node -p "require('./web/node_modules/socket.io-client/package.json').version")
printf 'socket.io-client %s (MIT): dist/socket.io.esm.min.js, copied by scripts/build_web.sh\n' "$version" \
  > ingress/web/vendor/README.txt
echo "build_web: ingress/web/vendor/socket.io.esm.min.js is socket.io-client $version"
