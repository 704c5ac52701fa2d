#!/usr/bin/env bash
# Builds the edge agent (and the hub, for an ARM single-site server) for aarch64 Linux
# gateways — NVIDIA Jetson (JetPack 5/6: Ubuntu 20.04/22.04, glibc ≥ 2.31) and other
# ARM64 boxes — and fetches the matching ONNX Runtime library.
#
#   cross/build-aarch64.sh [--native] [--ort-version X.Y.Z]
#
# Two ways to build:
#   default   `cross` (https://github.com/cross-rs/cross; needs Docker or Podman):
#             cargo install cross --locked
#   --native  a Debian/Ubuntu x86_64 host with the aarch64 toolchain:
#             rustup target add aarch64-unknown-linux-gnu
#             apt-get update
#             apt-get install gcc-aarch64-linux-gnu libclang-dev
#             (libclang for the `v4l2` feature's bindgen; nothing else is a system package)
#
# Output: target/aarch64-unknown-linux-gnu/release/{chitti-agent,chitti-hub} and
# cross/out/onnxruntime/libonnxruntime.so.* (point the agent's detector at it, or set
# ORT_DYLIB_PATH). The library comes from the PyPI `onnxruntime` wheel for
# manylinux_2_28_aarch64 (glibc 2.28: runs on every JetPack ≥ 5).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
native=false
ort_version=${ORT_VERSION:-}
while (($#)); do
  case $1 in
    --native) native=true ;;
    --ort-version) ort_version=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done

if $native; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
  # bindgen parses v4l's headers for the target.
  export BINDGEN_EXTRA_CLANG_ARGS="--target=aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
  cargo build --release --locked --target "$TARGET" -p chitti-agent -p chitti-hub --features chitti-agent/v4l2
else
  command -v cross >/dev/null || { echo "cross not found: cargo install cross --locked (or use --native)" >&2; exit 1; }
  CROSS_CONFIG=cross/Cross.toml cross build --release --locked --target "$TARGET" -p chitti-agent -p chitti-hub --features chitti-agent/v4l2
fi

# ONNX Runtime for the detector (the `ort` crate loads it at run time: load-dynamic).
ORT_VERSION=${ort_version:-1.32.0} models/fetch-onnxruntime.sh --arch aarch64 cross/out/onnxruntime
file "target/$TARGET/release/chitti-agent" 2>/dev/null || true
