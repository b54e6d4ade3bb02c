#!/usr/bin/env bash
# Starts a release agent with one statsd input on a free port, runs the statsd_load example
# against it and prints packets/s, loss (kernel + agent queue) and RSS.
#
#   workers/statsd/scripts/statsd_load.sh [RATE] [COUNT]
#   STATSD_EXTRA='allowed_pending_messages = 10000' workers/statsd/scripts/statsd_load.sh 250000 1000000
#   RATE=0 sends as fast as the sender can; SENDERS=4 sends from four sockets (threads).
#   DATAKIT_BIN=/path/to/datakit NO_BUILD=1 runs another build (e.g. to compare with an older one).
set -euo pipefail
RATE="${1:-100000}"
COUNT="${2:-1000000}"
EXTRA="${STATSD_EXTRA:-}"
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$ROOT"

if [ -z "${NO_BUILD:-}" ]; then
  # Two invocations: --example would restrict the first package to examples too.
  cargo build --release -q -p datakit
  cargo build --release -q -p dk-input-statsd --example statsd_load
fi
BIN="${DATAKIT_BIN:-$ROOT/target/release/datakit}"
LOAD="$ROOT/target/release/examples/statsd_load"

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API_PORT="$(free_port SOCK_STREAM)"
UDP_PORT="$(free_port SOCK_DGRAM)"
WORK="$(mktemp -d /tmp/dk-statsd-load.XXXXXX)"
mkdir -p "$WORK/conf.d/statsd"
cat > "$WORK/conf.d/datakit.conf" <<CONF
default_enabled_inputs = []
[http_api]
  listen = "127.0.0.1:$API_PORT"
[io]
  flush_interval = "200ms"
[logging]
  log = "stdout"
  level = "info"
CONF
cat > "$WORK/conf.d/statsd/statsd.conf" <<CONF
[[inputs.statsd]]
  interval = "2s"
  service_address = "127.0.0.1:$UDP_PORT"
  service_unix_address = ""
  $EXTRA
CONF

"$BIN" run --workdir "$WORK" > "$WORK/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null || true; wait $AGENT 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$API_PORT/v1/ping" > /dev/null 2>&1; then break; fi
  sleep 0.1
done
# Let the worker start and report once.
sleep 1.5
echo "agent pid $AGENT, statsd on 127.0.0.1:$UDP_PORT, rate $RATE/s, count $COUNT, extra: ${EXTRA:-none}"
echo "rmem_default $(cat /proc/sys/net/core/rmem_default), rmem_max $(cat /proc/sys/net/core/rmem_max)"
"$LOAD" --rate "$RATE" --count "$COUNT" --port "$UDP_PORT" --senders "${SENDERS:-1}" \
  --api "127.0.0.1:$API_PORT" --workdir "$WORK" --agent-pid "$AGENT"
