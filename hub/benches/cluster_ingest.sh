#!/usr/bin/env bash
# Sustained ingest of the fleet shape in one run: one hub process against two hub
# replicas, both on the same 3-node NATS cluster (JetStream R3, the shipped
# cluster.conf), and one hub process on its embedded broker for reference, on this
# machine's cores, in alternating rounds (A B C A B C …) so that drift in the machine
# falls on every configuration alike. Each round is one `ingest_load` run with a fresh
# database and a fresh cluster; the full reports go to $OUT (default
# target/cluster-ingest), the summary to stdout.
#
#   hub/benches/cluster_ingest.sh                 # GATEWAYS=200 FINDINGS=100000 BATCH=50 WINDOW=2 ROUNDS=2
#   GATEWAYS=1000 ROUNDS=3 hub/benches/cluster_ingest.sh
#
# Needs nats-server on PATH (Debian `nats-server`) and Postgres (as ingest_load).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${GATEWAYS:=200}" "${FINDINGS:=100000}" "${BATCH:=50}" "${WINDOW:=2}" "${ROUNDS:=2}"
OUT=${OUT:-target/cluster-ingest}
mkdir -p "$OUT"
export GATEWAYS FINDINGS BATCH WINDOW

cargo bench -p chitti-hub --bench ingest_load --no-run 2>&1 | tail -1

declare -A NAMES=(
  [embedded]="1 hub process, embedded broker"
  [nats1]="1 hub process, NATS cluster (3 nodes)"
  [nats2]="2 hub replicas, NATS cluster (3 nodes)"
)
run() { # name, env…
  local name=$1 round=$2
  shift 2
  local log="$OUT/$name-$round.log"
  env "$@" cargo bench -q -p chitti-hub --bench ingest_load >"$log" 2>&1 || {
    echo "$name round $round failed: see $log" >&2
    tail -20 "$log" >&2
    exit 1
  }
}
for round in $(seq 1 "$ROUNDS"); do
  run embedded "$round" HUBS=1 BROKER=embedded
  run nats1 "$round" HUBS=1 BROKER=nats NATS_NODES=3
  run nats2 "$round" HUBS=2 BROKER=nats NATS_NODES=3
done

echo
echo "# cluster ingest: $GATEWAYS gateways, $FINDINGS findings in batches of $BATCH, window $WINDOW, $ROUNDS rounds"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nats-server --version)"
echo "rerun:   GATEWAYS=$GATEWAYS FINDINGS=$FINDINGS BATCH=$BATCH WINDOW=$WINDOW ROUNDS=$ROUNDS hub/benches/cluster_ingest.sh"
echo
for name in embedded nats1 nats2; do
  echo "## ${NAMES[$name]}"
  for round in $(seq 1 "$ROUNDS"); do
    log="$OUT/$name-$round.log"
    rate=$(grep -m1 '  acked:' "$log" | sed 's/.*→ \([0-9]*\) findings\/s.*/\1/')
    lost=$(grep -m1 '  lost:' "$log" | awk '{print $2}')
    lat=$(grep -m1 '  ack latency:' "$log" | sed 's/  ack latency:  //; s/ (publish.*//')
    copy=$(grep -m1 '^COPY:' "$log" | sed 's/.*→ \([0-9]*\) findings\/s.*/\1/')
    busy=$(grep '= machine busy' "$log" | tail -1 | awk '{print $(NF-1)}')
    echo "round $round: $rate findings/s (COPY $copy), lost $lost, ack $lat; machine busy $busy of $(nproc) cores"
    # Where the cores went while publishing (the second CPU table of the report).
    awk '/CPU from the start signal/{on=1; next} on && /^  memory|^$/{on=0} on && /hub process|nats-server|postgres/{printf "    %s\n", $0}' "$log"
    grep '  memory of hub process\|  memory of the NATS' "$log" | sed 's/^  /    /'
  done
  echo
done
