#!/usr/bin/env bash
# The ACS under load (examples/acs_load.rs): builds the release server and the load tool, and
# runs it on a fresh SQLite file, or with --postgres on a throwaway PostgreSQL on loopback
# (port NULAB_PASS_TEST_PG_PORT, default 55432), whose CPU is then reported too. Any other
# arguments go to the tool (e.g. --concurrency 1,4 --sign-ins 500 --signing response).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

backend=sqlite
if [[ "${1:-}" == "--postgres" ]]; then
  backend=postgres
  shift
fi
cargo build --locked --release --bin nulab-pass --example acs_load
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
tool="$target_dir/release/examples/acs_load"

if [[ $backend == sqlite ]]; then
  exec "$tool" --backend sqlite --server "$target_dir/release/nulab-pass" "$@"
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
pg_dir=$(mktemp -d /tmp/nulab-pass-load-pg.XXXXXX)
pg_port=${NULAB_PASS_TEST_PG_PORT:-55432}
chown postgres "$pg_dir" 2>/dev/null || true
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_pg() {
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop_pg EXIT
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
# A deployment's durability settings (fsync and synchronous commit on), unlike the test suite's.
as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=100" >/dev/null
export NULAB_PASS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
pg_pid=$(head -n 1 "$pg_dir/data/postmaster.pid")
"$tool" --backend postgres --server "$target_dir/release/nulab-pass" --pg-pid "$pg_pid" "$@"
