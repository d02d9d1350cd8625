#!/usr/bin/env bash
# REST load figures: the release server on a fresh PostgreSQL database, registered couples, and
# wrk (Debian package `wrk`) against GET /api/expenses/split-calculation and POST /api/expenses,
# first all on one couple (every request goes through that couple's one document actor), then
# spread over COUPLES couples. Reference phases: GET /healthz (no auth, no database) and
# GET /api/users/profile (token check plus one indexed read).
#
#   cargo build --release -p splitsave-server --bin splitsave
#   scripts/rest-load.sh      # ADMIN_URL, PORT, CONNS, THREADS, DURATION, SEED, COUPLES, BIN,
#                             # DB_PARAMS
set -euo pipefail
cd "$(dirname "$0")/.."

ADMIN_URL=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-39170}
CONNS=${CONNS:-100}
THREADS=${THREADS:-2}
DURATION=${DURATION:-20s}
SEED=${SEED:-20}          # expenses per couple before measuring the split
COUPLES=${COUPLES:-50}
BIN=${BIN:-target/release/splitsave}
DB="splitsave_restload_$$"
BASE="http://127.0.0.1:$PORT"
DATA_DIR=$(mktemp -d)

psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB"
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT

DB_URL="${ADMIN_URL%/*}/$DB"
# Experiments only, e.g. DB_PARAMS='?options=-c%20synchronous_commit%3Doff' to see what the
# WAL flush per commit costs (the product needs synchronous commits: acknowledged is durable).
SERVER_DB_URL="$DB_URL${DB_PARAMS:-}"
SPLITSAVE_DATA_DIR="$DATA_DIR" DATABASE_URL="$SERVER_DB_URL" PORT="$PORT" API_RATE_LIMIT=4000000000 \
  RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve >"$DATA_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

post() { curl -fsS -X POST "$BASE$1" -H 'Content-Type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2"; }
register() { post /api/auth/register "{\"email\":\"$1\",\"password\":\"correct horse battery\",\"name\":\"$2\",\"currency\":\"USD\"}" | jq -r .access_token; }

TOKENS=()
for c in $(seq 1 "$COUPLES"); do
  ann=$(register "ann$c@load.test" Ann)
  ben=$(register "ben$c@load.test" Ben)
  invitation=$(post /api/partnerships/invite "{\"email\":\"ben$c@load.test\"}" "$ann" | jq -r .id)
  post "/api/partnerships/accept/$invitation" '{}' "$ben" >/dev/null
  for i in $(seq 1 "$SEED"); do
    post /api/expenses "{\"name\":\"Seed $i\",\"amount\":\"$i.25\",\"category\":\"groceries\",\"frequency\":\"monthly\"}" "$ann" >/dev/null
  done
  TOKENS+=("$ann")
done
ONE="${TOKENS[0]}"
MANY="${TOKENS[*]}"
curl -fsS "$BASE/api/expenses/split-calculation" -H "Authorization: Bearer $ONE" | jq -c .

# CPU seconds (user + system, all threads) used so far by the server process.
cpu_server() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$SERVER_PID/stat"; }
# CPU seconds used so far by every PostgreSQL process (other users of the server count too).
cpu_postgres() {
  local total=0 ticks
  for stat in /proc/[0-9]*/stat; do
    ticks=$(awk '$2 == "(postgres)" { print $14 + $15 }' "$stat" 2>/dev/null || true)
    [ -n "$ticks" ] && total=$((total + ticks))
  done
  echo "scale=1; $total / $(getconf CLK_TCK)" | bc
}

run() { # label, tokens, script, path
  echo "== $1 ($CONNS connections, $THREADS threads, $DURATION)"
  local s0 p0
  s0=$(cpu_server); p0=$(cpu_postgres)
  TOKENS="$2" /usr/bin/time -f "   wrk CPU seconds: %U user, %S system" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$3" "$BASE$4" \
    2>&1 | grep -E 'Latency|50%|90%|99%|requests in|Requests/sec|Non-2xx|Socket errors|CPU'
  echo "   CPU seconds: server $(echo "$(cpu_server) - $s0" | bc), postgres $(echo "$(cpu_postgres) - $p0" | bc)"
}
echo "== GET /healthz (reference: no auth, no database)"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$BASE/healthz" | grep -E '50%|99%|Requests/sec'
run "GET /api/users/profile (reference: token check + one read)" "$ONE" scripts/rest-load-read.lua /api/users/profile
run "GET /api/expenses/split-calculation, one couple" "$ONE" scripts/rest-load-read.lua /api/expenses/split-calculation
run "GET /api/expenses/split-calculation, $COUPLES couples" "$MANY" scripts/rest-load-read.lua /api/expenses/split-calculation
run "POST /api/expenses, one couple" "$ONE" scripts/rest-load-create.lua /api/expenses
run "POST /api/expenses, $COUPLES couples" "$MANY" scripts/rest-load-create.lua /api/expenses
echo "== expenses stored: $(psql -Atq "$DB_URL" -c 'SELECT count(*) FROM expenses')"
