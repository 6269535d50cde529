#!/usr/bin/env bash
# `make demo`: the fleet workflow an operator follows, against a 3-site lab, printing what they
# would see; the lab is taken down at the end (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
LAB=demo
INV=tests/lab/run/$LAB/hosts.yml
trap 'invoke lab.down --name $LAB >/dev/null 2>&1 || true' EXIT
say() { if [ -t 1 ]; then printf '\n\033[1m$ %s\033[0m\n' "$*"; else printf '\n$ %s\n' "$*"; fi; }
run() { say "$*"; "$@"; }

run invoke lab.up --name $LAB --sites 3 --variants migrated,fresh-volume,summary-cagg
run invoke lab.status --name $LAB
say "# what is each site's state? (read-only)"
run invoke status --inventory $INV
say "# canary: one site first, convert mode (every hypertable copied into a plain table online; no row lost)"
run invoke rollback --mode=convert --sites lab1 --parallel 1 --max-failures 1 --yes --inventory $INV
say "# the canary kept every flow its backend committed (read on the server)"
run ssh -F tests/lab/run/$LAB/ssh_config lab1 'sort -u /root/netmon-lab/committed_flow_ids > /tmp/committed;
  docker exec netmon-db psql -U netmon -d netmon -XtAc "SELECT id FROM flow_records" | sort > /tmp/kept;
  echo "committed: $(wc -l < /tmp/committed), missing from flow_records: $(comm -23 /tmp/committed /tmp/kept | wc -l)"' 
say "# the rest in one batch, restoring each site's pre-migration backup"
run invoke rollback --mode=restore --sites lab2,lab3 --yes --inventory $INV
say "# one table for the whole fleet"
run invoke verify --inventory $INV
run invoke lab.down --name $LAB
