#!/usr/bin/env bash
# Runs every test of the Chitti workspace: the README's second command.
#
# It prepares what the tests need on this machine, then runs the whole suite with
# cargo-nextest (falling back to `cargo test` where nextest is not installed) and the
# doc tests. Later issues add their prerequisites here (Postgres, Mosquitto, the ONNX
# Runtime library, Chromium), so one command keeps running everything.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need beyond Rust (the default builds need nothing: see
# tests/tests/dependency_graph.rs): libclang-dev for the agent's `v4l2` feature (bindgen;
# .ci/run lints it), faketime runs an agent with a wrong clock, chromium and
# chromium-driver run the dashboard's browser tests, nats-server runs the NATS cluster
# tests (three nodes, the shipped permissions), patroni, etcd-server and haproxy run the
# highly available Postgres (deploy/postgres/). Installed only when missing and we are
# root; otherwise say what is missing.
missing=()
for pkg in libclang-dev faketime chromium chromium-driver nats-server patroni etcd-server haproxy; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "run-all: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "run-all: missing system packages: ${missing[*]} (install them with apt-get)" >&2
    exit 1
  fi
fi

# Services the tests talk to for real: Mosquitto on 127.0.0.1:1883 (the agent's
# delivery tests) and PostgreSQL on 127.0.0.1:5432 (the hub's store tests). Started
# when installed but stopped; installed with apt when missing and we are root.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  echo "run-all: nothing listens on 127.0.0.1:$1 ($2)" >&2
  exit 1
}
if ! port_open 1883; then
  if ! command -v mosquitto >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "run-all: installing mosquitto"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
  fi
  echo "run-all: starting mosquitto"
  if [[ -f /etc/mosquitto/mosquitto.conf ]]; then
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
  else
    mosquitto -d -p 1883
  fi
  wait_port 1883 mosquitto
fi
if ! port_open 5432 && command -v pg_ctlcluster >/dev/null; then
  echo "run-all: starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  wait_port 5432 postgresql
fi

# The ONNX Runtime library the detector tests load (fetched once from the PyPI wheel).
ORT_DYLIB_PATH=$(models/fetch-onnxruntime.sh)
export ORT_DYLIB_PATH

# `chitti-hub/demo`: the demo (off in the hub's default build) and its tests run too;
# the end-to-end tests' `chitti-hub demo` binary is built with it.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --features chitti-hub/demo --locked --no-fail-fast
else
  cargo test --workspace --features chitti-hub/demo --locked --no-fail-fast --lib --bins --tests
fi
# nextest does not run doc tests.
cargo test --workspace --features chitti-hub/demo --locked --doc

# The hub's API against its own OpenAPI document (a running hub, schemathesis).
tests/schemathesis.sh

# The deployment files: Kubernetes manifests against their schemas (kubernetes-validate),
# the compose file against the compose spec, the Dockerfile's rules.
bash deploy/check.sh
