#!/usr/bin/env bash
# The first command: sets up what is missing and starts nulab-pass on its embedded defaults
# (SQLite file ./nulab-pass.db, no SMTP: email shows on http://127.0.0.1:8080/dev/mail).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --locked --release -- serve --dev "$@"
