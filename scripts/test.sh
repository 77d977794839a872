#!/usr/bin/env bash
# The test command: installs missing system packages, then runs every test
# (unit, openraft's storage suite, and integration tests over real
# processes, etcdctl included). The build is shared with scripts/keelson.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keelson-target}"
cargo test --workspace "$@"
