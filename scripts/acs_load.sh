#!/usr/bin/env bash
# The ACS under load (examples/acs_load.rs): builds the release server and the load tool, and
# runs it on a fresh SQLite file, or with --postgres on a throwaway PostgreSQL on loopback
# (port NULAB_PASS_TEST_PG_PORT, default 55432), whose CPU is then reported too. Any other
# arguments go to the tool (e.g. --concurrency 1,4 --sign-ins 500 --signing response).
set -euo pipefail
cd "$(dirname "$0")/.."

backend=sqlite
if [[ "${1:-}" == "--postgres" ]]; then
  backend=postgres
  shift
fi
# PostgreSQL comes with the test packages.
if [[ $backend == postgres ]]; then bash scripts/setup.sh --test; else bash scripts/setup.sh; fi
cargo build --locked --release --bin nulab-pass --example acs_load
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
tool="$target_dir/release/examples/acs_load"

if [[ $backend == sqlite ]]; then
  exec "$tool" --backend sqlite --server "$target_dir/release/nulab-pass" "$@"
fi

source scripts/pg_throwaway.sh
export NULAB_PASS_TEST_POSTGRES_URL="$pg_url"
"$tool" --backend postgres --server "$target_dir/release/nulab-pass" --pg-pid "$pg_pid" "$@"
