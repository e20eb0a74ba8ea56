#!/usr/bin/env bash
# make bench: billing.status through the release server, loaded by wrk, against pgbench -S (select-only) on the
# same database for the same time and connections. Prints both rates, their ratio, p50/p99 and the server's peak
# memory. A benchmark, not a test: nothing here fails on a slow machine.
#   BENCH_SECONDS (default 10)  BENCH_CONNECTIONS (default 32)  BENCH_ROUNDS (default 2; runs alternate)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-32}
rounds=${BENCH_ROUNDS:-2}

scripts/install-deps.sh postgres wrk
echo "== release build"
swift build -c release --product billingd 2>&1 | tail -n 1

base=$(mktemp -d /tmp/billing-bench.XXXXXX)
pg_port=$(( 20000 + RANDOM % 20000 ))
http_port=$(( pg_port + 1 ))
super_pw="bench-$RANDOM$RANDOM"
app_pw="bench-app-$RANDOM$RANDOM"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  scripts/pg.sh stop "$base"
  rm -rf "$base"
}
trap cleanup EXIT

scripts/pg.sh start "$base" "$pg_port" "$super_pw"
export PGPASSWORD=$super_pw
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE billing" >/dev/null

export DATABASE_OWNER_URL="postgres://postgres:$super_pw@127.0.0.1:$pg_port/billing"
export DATABASE_URL="postgres://billing_app:$app_pw@127.0.0.1:$pg_port/billing"
export BILLING_JWT_SECRET="bench-secret-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BILLING_HTTP_PORT=$http_port
export BILLING_LOG_LEVEL=warning
export BILLING_DB_POOL_SIZE=${BILLING_DB_POOL_SIZE:-$connections}

.build/release/billingd migrate >/dev/null
.build/release/billingd serve 2>"$base/server.err" &
server_pid=$!
url="http://127.0.0.1:$http_port"
for _ in $(seq 1 100); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.1; done

service=$(.build/release/billingd token --role service)
tenant=$(curl -sf "$url/rpc" -H 'Content-Type: application/json' -H "Authorization: Bearer $service" \
  -d '{"jsonrpc":"2.0","id":1,"method":"tenants.provision","params":{"name":"Bench","email":"bench@example.com"}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["tenantId"])')
token=$(.build/release/billingd token --role member --tenant "$tenant" --ttl 3600)
body='{"jsonrpc":"2.0","id":1,"method":"billing.status"}'
sample=$(curl -sf "$url/rpc" -H 'Content-Type: application/json' -H "Authorization: Bearer $token" -d "$body")
echo "$sample" | grep -q '"result"' || { echo "billing.status did not answer a result: $sample" >&2; exit 1; }

cat > "$base/status.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA

pgbench -q -i -s 10 -h 127.0.0.1 -p "$pg_port" -U postgres billing >/dev/null 2>&1

rpc_rates=() pg_rates=() p50s=() p99s=()
for round in $(seq 1 "$rounds"); do
  echo "== round $round: wrk billing.status, ${seconds}s x $connections connections"
  wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$base/status.lua" "$url/rpc" > "$base/wrk.out"
  if grep -q "Non-2xx" "$base/wrk.out"; then grep "Non-2xx" "$base/wrk.out" >&2; fi
  rpc_rates+=("$(awk '/^Requests\/sec/ {print $2}' "$base/wrk.out")")
  p50s+=("$(awk '$1 == "50%" {print $2}' "$base/wrk.out")")
  p99s+=("$(awk '$1 == "99%" {print $2}' "$base/wrk.out")")
  echo "== round $round: pgbench -S, ${seconds}s x $connections connections"
  pg_rates+=("$(pgbench -S -n -c "$connections" -j 2 -T "$seconds" -h 127.0.0.1 -p "$pg_port" -U postgres billing 2>/dev/null \
    | awk '/^tps/ {print $3; exit}')")
done

peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
python3 - "$peak_kib" "${rpc_rates[*]}" "${pg_rates[*]}" "${p50s[*]}" "${p99s[*]}" <<'PY'
import sys
peak, rpc, pg, p50, p99 = sys.argv[1], *[a.split() for a in sys.argv[2:]]
print()
print(f"{'round':>5} {'billing.status req/s':>22} {'pgbench -S tps':>16} {'ratio':>7} {'p50':>9} {'p99':>9}")
for i, (r, p) in enumerate(zip(rpc, pg), 1):
    print(f"{i:>5} {float(r):>22.0f} {float(p):>16.0f} {float(r)/float(p):>7.2f} {p50[i-1]:>9} {p99[i-1]:>9}")
mr = sum(map(float, rpc)) / len(rpc); mp = sum(map(float, pg)) / len(pg)
print(f"{'mean':>5} {mr:>22.0f} {mp:>16.0f} {mr/mp:>7.2f}")
print(f"server peak memory (VmHWM): {int(peak)/1024:.1f} MiB")
PY
