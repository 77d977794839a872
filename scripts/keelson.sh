#!/usr/bin/env bash
# The run command: installs missing system packages, builds, and runs the
# keelson binary with the given arguments from the current directory
# (e.g. `scripts/keelson.sh server` keeps its data in ./default.keelson).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keelson-target}"
# Build from the repository root so .cargo/config.toml applies.
(cd "$root" && cargo build --workspace --quiet)
exec "$CARGO_TARGET_DIR/debug/keelson" "$@"
