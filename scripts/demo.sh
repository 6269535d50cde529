#!/usr/bin/env bash
# `make demo`: the main job against a lab, as a user would run it, then the lab taken down.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
trap 'invoke lab.down --name demo >/dev/null 2>&1 || true' EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say invoke lab.up --name demo --sites 3 --variants migrated,fresh-volume,summary-cagg
invoke lab.up --name demo --sites 3 --variants migrated,fresh-volume,summary-cagg
say invoke lab.status --name demo
invoke lab.status --name demo
say "ssh -F tests/lab/run/demo/ssh_config lab2 'cd /root/netmon && docker compose ps'"
ssh -F tests/lab/run/demo/ssh_config lab2 'cd /root/netmon && docker compose ps'
say invoke lab.down --name demo
invoke lab.down --name demo
