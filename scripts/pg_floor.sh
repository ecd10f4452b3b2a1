#!/usr/bin/env bash
# The database's floor under a sign-in: what PostgreSQL alone spends on the writes no durable,
# audited, replay-protected sign-in can skip (scripts/pg_floor/*.sql: the replay cache, the audit
# chain head, the audit event, the browser session), one sign-in at a time and eight in one
# statement, run by pgbench against nulab-pass's own schema on a throwaway PostgreSQL with a
# deployment's durability settings (fsync and synchronous commit on), on loopback port
# NULAB_PASS_TEST_PG_PORT (default 55432). Prints sign-ins/s and the CPU per sign-in of
# PostgreSQL and of pgbench at each concurrency.
# Usage: bash scripts/pg_floor.sh [--clients 1,8,32] [--seconds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
# PostgreSQL (with pgbench) comes with the test packages.
bash scripts/setup.sh --test

clients=1,8,32
seconds=20
while (($#)); do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

cargo build --locked --release --bin nulab-pass
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

source scripts/pg_throwaway.sh
"$target_dir/release/nulab-pass" db migrate --database-url "$pg_url" >/dev/null
python3 scripts/pg_floor/measure.py "$pg_bin/pgbench" \
  "-h 127.0.0.1 -p $pg_port -U postgres postgres" "$pg_pid" "$seconds" \
  "$clients" scripts/pg_floor/writes.sql scripts/pg_floor/one_statement.sql \
  scripts/pg_floor/one_statement.sql:8
