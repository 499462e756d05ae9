#!/bin/sh
# Entrypoint of the compose "cluster" profile's RabbitMQ nodes: every node of a cluster must share
# one Erlang cookie. It comes from RABBITMQ_CLUSTER_COOKIE (never committed) and is written where
# both the server and the CLI tools (healthchecks) read it, then the image's own entrypoint runs.
set -eu
if [ -z "${RABBITMQ_CLUSTER_COOKIE:-}" ]; then
  echo "set RABBITMQ_CLUSTER_COOKIE (any long random string, the same for the three nodes)" >&2
  exit 64
fi
cookie=/var/lib/rabbitmq/.erlang.cookie
umask 077
printf '%s' "$RABBITMQ_CLUSTER_COOKIE" > "$cookie"
chown rabbitmq:rabbitmq "$cookie"
chmod 400 "$cookie"
exec docker-entrypoint.sh rabbitmq-server
