#!/usr/bin/env bash
# API load benchmark (issue #5): the alert list and alert detail over a Postgres store
# holding FINDINGS findings (default 1 000 000, in tracks of 20: 50 000 alerts).
#
#   hub/benches/api_load.sh [FINDINGS]
#
# Needs: Postgres at $PGHOST:$PGPORT (default 127.0.0.1:5432, user postgres, trust),
# `oha` (cargo install oha; or set OHA=/path/to/oha), pgbench (Debian's postgresql).
# Prints, for each endpoint:
#   (a) 1000 open connections at a fixed 1000 req/s for $SECONDS_A s: p50/p99 (after
#       a 5 s warm-up at the same load, not reported);
#   (b) saturation: 64 connections, as fast as it goes, for $SECONDS_B s: req/s;
# and the same SQL run directly by pgbench (the store's own query text), so the API's
# own overhead shows. The database is re-created each run (chitti_api_bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
FINDINGS=${1:-1000000}
SECONDS_A=${SECONDS_A:-30}
SECONDS_B=${SECONDS_B:-20}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
DB=chitti_api_bench
OHA=${OHA:-$(command -v oha || echo /tmp/oha-root/bin/oha)}
PGBENCH=${PGBENCH:-$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -1)}
URL="postgres://postgres@$PGHOST:$PGPORT/$DB"
work=$(mktemp -d)
hub_pid=
cleanup() { [[ -n $hub_pid ]] && kill "$hub_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "api_load: building (release)"
cargo build --release --quiet -p chitti-hub --bin chitti-hub --example api_seed
bin=target/release/chitti-hub

psql -qX -h "$PGHOST" -p "$PGPORT" -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
echo "api_load: seeding $FINDINGS findings"
alert=$(target/release/examples/api_seed "$URL" "$FINDINGS" 20 | awk '/^alert /{print $2}')
psql -qX -h "$PGHOST" -p "$PGPORT" -U postgres -d "$DB" -c "VACUUM ANALYZE" >/dev/null
counts=$(psql -qAtX -h "$PGHOST" -p "$PGPORT" -U postgres -d "$DB" -c "SELECT (SELECT count(*) FROM findings) || ' findings, ' || (SELECT count(*) FROM alerts) || ' alerts'")

cat >"$work/hub.toml" <<TOML
version = 1
data_dir = "$work/data"
[store]
url = "$URL"
max_connections = 16
[broker]
mode = "embedded"
[broker.embedded]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
requests_per_minute = 1000000000
TOML
printf 'load test password\n' >"$work/pw"
$bin user add --config "$work/hub.toml" --username bench --role viewer --password-file "$work/pw" >/dev/null
$bin serve --config "$work/hub.toml" >"$work/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
  grep -q "chitti-hub listening" "$work/hub.log" && break
  sleep 0.2
done
http=$(sed -n 's/.*chitti-hub listening: .* http \(.*\)$/\1/p' "$work/hub.log")
[[ -n $http ]] || { cat "$work/hub.log"; exit 1; }
token=$(curl -fsS -H 'content-type: application/json' \
  -d '{"username":"bench","password":"load test password"}' "http://$http/api/v1/auth/login" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# The store's query text for each endpoint (hub/src/store/postgres.rs).
cols="id, site, gateway, camera, track_id, asset, component_class, severity_table, status, worst_level, worst_max_c, last_level, last_max_c, first_finding_id, first_finding_at, last_finding_id, last_finding_at, finding_count, cleared_at, created_at, updated_at, status_changed_at"
cat >"$work/list.sql" <<SQL
SELECT $cols FROM alerts WHERE 1 = 1 ORDER BY created_at DESC, id DESC LIMIT 51;
SQL
cat >"$work/detail.sql" <<SQL
SELECT $cols FROM alerts WHERE id = '$alert';
SELECT id, alert_id, kind, actor, at, from_address, note, detail FROM alert_events WHERE alert_id = '$alert' ORDER BY id;
SELECT id, doc, received_at, batch_id FROM findings f WHERE (site, gateway, camera, track_id) = (SELECT site, gateway, camera, track_id FROM alerts WHERE id = '$alert') ORDER BY received_at DESC, id DESC LIMIT 1001;
SQL

oha_line() { # url rate|'' connections seconds
  local rate_args=()
  [[ -n $2 ]] && rate_args=(-q "$2")
  "$OHA" --no-tui --output-format json -z "${4}s" -c "$3" "${rate_args[@]}" \
    -H "Authorization: Bearer $token" "$1" >"$work/oha.json"
  python3 - "$work/oha.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"{s['requestsPerSec']:9.0f} req/s  p50 {p['p50']*1000:7.2f} ms  p99 {p['p99']*1000:7.2f} ms  ok {s['successRate']*100:.1f}%  codes {codes}")
PY
}

pgbench_line() { # sql clients rate|''
  local rate_args=()
  [[ -n $3 ]] && rate_args=(-R "$3")
  (cd "$work" && rm -f pgbench_log.* &&
    "$PGBENCH" -n -h "$PGHOST" -p "$PGPORT" -U postgres -c "$2" -j 2 -T "$SECONDS_B" "${rate_args[@]}" -l -f "$1" "$DB" >"$work/pgbench.out" 2>&1)
  local tps
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out")
  cat "$work"/pgbench_log.* | python3 -c '
import sys
lat = sorted(int(l.split()[2]) for l in sys.stdin if l.strip())
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] / 1000
print(f"{float(sys.argv[1]):9.0f} tx/s   p50 {q(0.50):7.2f} ms  p99 {q(0.99):7.2f} ms")' "$tps"
}

echo
echo "== API load: $counts; hub $(git rev-parse --short HEAD) release; $(nproc) cores"
for ep in list detail; do
  if [[ $ep == list ]]; then path="/api/v1/alerts?limit=50"; else path="/api/v1/alerts/$alert"; fi
  echo "-- GET $path"
  # Warm-up, not reported: 1000 connections opened and the pool filled once.
  oha_line "http://$http$path" 1000 1000 5 >/dev/null
  printf '  (a) 1000 conns @ 1000 req/s, %ss: ' "$SECONDS_A"; oha_line "http://$http$path" 1000 1000 "$SECONDS_A"
  printf '  (b) saturation, 64 conns, %ss:  ' "$SECONDS_B"; oha_line "http://$http$path" "" 64 "$SECONDS_B"
  printf '  SQL @ 1000 tx/s (pgbench, 16 clients):  '; pgbench_line "$ep.sql" 16 1000
  printf '  SQL saturation (pgbench, 16 clients):   '; pgbench_line "$ep.sql" 16 ""
done
echo
echo "rerun: hub/benches/api_load.sh $FINDINGS   (SECONDS_A=$SECONDS_A SECONDS_B=$SECONDS_B)"
