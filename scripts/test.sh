#!/usr/bin/env bash
# The second command: sets up what is missing, starts a throwaway PostgreSQL on loopback, and
# runs the whole test suite (every store and HTTP test runs on SQLite and on PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/nulab-pass-pg.XXXXXX)
pg_port=${NULAB_PASS_TEST_PG_PORT:-55432}
chown postgres "$pg_dir" 2>/dev/null || true
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop_pg() {
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_pg EXIT

as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" >/dev/null
export NULAB_PASS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi

# The whole suite also runs schemathesis against the API's OpenAPI document (a short run: 20
# generated requests per operation; scripts/schemathesis.sh takes more for a long one).
if (($# == 0)); then
  bash scripts/schemathesis.sh "${NULAB_PASS_SCHEMATHESIS_EXAMPLES:-20}"
fi
