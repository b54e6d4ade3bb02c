#!/usr/bin/env bash
# The project's test command (README "Quick start", step 2; CI runs it through .ci/run).
# Installs the real peers the tests use, then: format check, clippy, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers used by end-to-end tests (none beyond the toolchain yet; later issues add
# apt-get/pip installs here, guarded so a warm machine skips them).
need_apt=()
for pkg in "$@"; do need_apt+=("$pkg"); done
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
