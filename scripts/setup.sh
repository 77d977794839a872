#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Keelson,
# skipping whatever is already present:
#   - libclang (RocksDB's bindgen needs libclang.so and clang's stdbool.h)
#   - etcdctl 3.4 (Debian etcd-client), the real etcd client the tests drive
# protoc is not needed: the build uses the vendored protoc crate.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
   || ! ls /usr/lib/llvm-*/lib/clang/*/include/stdbool.h >/dev/null 2>&1; then
  missing+=(libclang1-14 libclang-common-14-dev)
fi
if ! command -v etcdctl >/dev/null 2>&1; then
  missing+=(etcd-client)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
