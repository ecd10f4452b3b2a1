#!/usr/bin/env bash
# The first command: sets up what is missing, builds, and runs `nulab-pass demo`: the server with
# seeded organizations, the mock IdP, a DNS server for `.test` names and the demo product
# "Backlog (demo)", all on loopback, with its data in ./demo-data (reused on the next run; pass
# --reset to start fresh). It prints the URLs, the credentials and three things to try.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --locked --release -- demo "$@"
