#!/usr/bin/env bash
# The project's test command (README "Quick start", step 2; CI runs it through .ci/run).
# Installs the real peers the tests use, then: format check, clippy, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# A test that needs a peer program or a privilege (influxd, tinyproxy, rpm, systemd-analyze,
# the Python clients, root for tmpfs/ENOSPC and namespaces, a cgroup controller) fails under
# DK_REQUIRE_PEERS=1 instead of skipping (dk_proto::testing::require). `DK_REQUIRE_PEERS=0
# scripts/test.sh` lets them skip on a machine without them.
export DK_REQUIRE_PEERS="${DK_REQUIRE_PEERS:-1}"

# Real peers the tests use, from Debian's packages (skipped when already installed):
#   influxdb  - a real InfluxDB 1.x for the InfluxDB sink tests
#   tinyproxy - a real HTTP proxy for the Dataway proxy test
#   netcat-openbsd, socat, collectd-core - real StatsD/Graphite/socket-log clients
#   softflowd - the real NetFlow v5/v9/IPFIX exporter (replays pcaps)
#   pmacct - pmacctd, whose sfprobe plugin is the real sFlow v5 agent (replays pcaps)
#   rpm - rpmbuild and rpm for the packaging tests (scripts/package.sh builds the .rpm)
#   systemd - systemd-analyze, which verifies the unit in the packaging tests
#   iproute2 - ip, which brings up loopback in the packaging test's network namespace
#   chromium - the headless browser that drives the DCA console page in its e2e test
#   etcd-server - etcd, the election backend the election tests start on loopback
#   protobuf-compiler - protoc, which the etcd client crate's build script needs
#   python3-yaml - parses the Kubernetes DaemonSet example in the container test
#   tmux - the 80x24 terminal whose screen the `datakit monitor` e2e test reads
#   (logger comes with bsdutils on every Debian)
need_apt=()
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy)
command -v nc.openbsd >/dev/null 2>&1 || need_apt+=(netcat-openbsd)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
[ -x /usr/sbin/collectd ] || need_apt+=(collectd-core)
[ -x /usr/sbin/softflowd ] || need_apt+=(softflowd)
command -v pmacctd >/dev/null 2>&1 || need_apt+=(pmacct)
command -v rpmbuild >/dev/null 2>&1 || need_apt+=(rpm)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
python3 -c 'import yaml' >/dev/null 2>&1 || need_apt+=(python3-yaml)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The packages' own services are not needed: tests start their own instances.
  $SUDO systemctl disable --now influxdb tinyproxy collectd etcd >/dev/null 2>&1 || true
fi
# Real client libraries from PyPI: the statsd and DogStatsD (datadog) clients, and the
# pylogbeat lumberjack v2 (Beats) client.
python3 -c 'import statsd, datadog, pylogbeat' >/dev/null 2>&1 || {
  echo "== pip install statsd datadog pylogbeat"
  python3 -m pip install -q statsd datadog pylogbeat
}
# The websockets client, speaking logfwd's WebSocket protocol to logfwdserver.
python3 -c 'import websockets' >/dev/null 2>&1 || {
  echo "== pip install websockets"
  python3 -m pip install -q websockets
}
# The OpenTelemetry Python SDK and its OTLP gRPC and HTTP exporters.
python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' >/dev/null 2>&1 || {
  echo "== pip install opentelemetry-sdk and the OTLP exporters"
  python3 -m pip install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http
}
# pyroscope-io's 0.8 line: the /ingest push API Datakit serves (1.x speaks push.v1 instead).
python3 -c 'import importlib.metadata as m, sys; sys.exit(not m.version("pyroscope-io").startswith("0."))' >/dev/null 2>&1 || {
  echo "== pip install pyroscope-io<1"
  python3 -m pip install -q 'pyroscope-io<1'
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked --features datakit/etcd -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --features datakit/etcd
else
  cargo test --workspace --locked --no-fail-fast --features datakit/etcd
fi
