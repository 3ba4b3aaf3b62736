#!/bin/sh
# Try the deployment on one machine: Redis, two nodes and HAProxy on 127.0.0.1.
#   sh deploy/run.sh          then   curl -XPOST localhost:8080/api/global_mean -d '{"question": "..."}'
# Ctrl-C stops everything. On real hosts run each part on its own machine with the same
# --store and --data, and point LESTATS_NODE_A/B at them.
set -eu
cd "$(dirname "$0")/.."
STATE=${STATE:-./deploy-state}
mkdir -p "$STATE/redis" "$STATE/a" "$STATE/b"
redis-server deploy/redis.conf --port 6390 --dir "$STATE/redis" &
python -m server --store redis://127.0.0.1:6390/0 --node a --port 5001 --state-dir "$STATE/a" &
python -m server --store redis://127.0.0.1:6390/0 --node b --port 5002 --state-dir "$STATE/b" &
export LESTATS_LISTEN=127.0.0.1:8080 LESTATS_NODE_A=127.0.0.1:5001 LESTATS_NODE_B=127.0.0.1:5002
trap 'kill $(jobs -p) 2>/dev/null' INT TERM EXIT
haproxy -db -f deploy/haproxy.cfg
