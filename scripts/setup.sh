#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test Keelson,
# skipping whatever is already present:
#   - libclang (RocksDB's bindgen needs libclang.so and clang's stdbool.h)
#   - etcdctl 3.4 (Debian etcd-client), the real etcd client the tests drive
#   - the runc runtime's tools: runc, nftables (nft), and for the tests'
#     images umoci, skopeo, docker-registry and busybox-static
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
for tool in runc:runc nft:nftables umoci:umoci skopeo:skopeo \
            docker-registry:docker-registry; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    missing+=("${tool#*:}")
  fi
done
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1 \
   || ! /bin/busybox --list 2>/dev/null | grep -qx nc; then
  missing+=(busybox-static)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
