#!/usr/bin/env bash
# Format check and clippy. Clippy only type-checks, so it is pointed at an
# empty RocksDB library dir in its own target dir: nothing links, and the
# ~15-minute C++ build of RocksDB is not repeated for check mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
ROCKSDB_LIB_DIR="$empty" ROCKSDB_STATIC=1 \
  CARGO_TARGET_DIR="${KEELSON_LINT_TARGET_DIR:-$HOME/.cache/keelson-lint-target}" \
  cargo clippy --workspace --all-targets -- -D warnings
